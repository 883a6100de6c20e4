"""The evaluation of an exercise: how the staff did against the scenario's expected actions.

:func:`evaluate` is pure. It reads the exercise's incidents and their log entries the way the
review does — each incident through :func:`crisis.review.metrics.incident_metrics` — and maps
every expected action onto those metrics (``owner_set`` → ``owner_set_at`` and so on), so a
moment is defined once, in docs/review.md. Targets (``within``) are scenario time: wall time
since the start, less the time paused, times the speed. An action is met when it happened at
or before its target, missed when it happened later or its target passed (or the exercise
ended) without it, and undecided (``None``) before that; once decided it never changes.

Beside the actions: the four principles' violations seen during the exercise (the board's
standing violations, :func:`crisis.domain.rules.standing_violations`, sampled at each moment
of the log and at each deadline), delivery and acknowledgement figures, the course chart and
the controller's observations. Renderers JSON, HTML and PDF reuse the incident report's
stylesheet, Oslo-time filter and local-only WeasyPrint fetcher (:mod:`crisis.review.report`).
:func:`evaluation_of` reads one exercise from the database and evaluates it (the API view
and, through it, ``crisis exercise report``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import log
from crisis.clock import as_utc, utcnow
from crisis.domain import rules
from crisis.domain.organisation import Organisation
from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.domain.vocabulary import EntryKind
from crisis.exercises import service as exercises
from crisis.log import projection
from crisis.log.chain import format_time
from crisis.log.models import Incident, LogEntry
from crisis.review import report as review_report
from crisis.review.chart import course_svg
from crisis.review.metrics import (
    DELIVERED,
    PUBLIC_GROUPS,
    STAFF_GROUPS,
    IncidentMetrics,
    format_duration,
    incident_metrics,
    summary,
)
from crisis.review.replay import _opening
from playbooks.exercises.scenario import ACTIONS, load_scenario

FORMATS: Final = review_report.FORMATS
MEDIA_TYPES: Final = review_report.MEDIA_TYPES
Format = Literal["html", "pdf", "json"]
Lang = Literal["nb", "en"]
TEMPLATES: Final = Path(__file__).parent / "templates"
#: At most so many moments are checked for violations (the end always among them).
_MAX_SAMPLES: Final = 300


class ExpectedLike(Protocol):
    """An expected action of a scenario (``playbooks.exercises.scenario.ExpectedAction``)."""

    @property
    def id(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def within(self) -> timedelta | None: ...
    @property
    def to(self) -> str | None: ...
    @property
    def card(self) -> str | None: ...


class ScenarioLike(Protocol):
    """What the evaluation reads of a ``playbooks.exercises.scenario.Scenario``."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def title_en(self) -> str: ...
    @property
    def expected(self) -> Sequence[Any]: ...


class ObservationLike(Protocol):
    """A controller's observation (``crisis.exercises.models.ExerciseObservation``)."""

    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def text(self) -> str: ...


# --- scenario time -----------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioClock:
    """Wall time ↔ scenario time of one exercise.

    ``pauses`` are known (start, end) wall intervals paused, ``end`` None while still paused;
    what ``paused_seconds`` holds beyond the ended ones counts as paused right at the start,
    as ``crisis.exercises.service.scenario_seconds`` counts it: exact after the last pause.
    """

    started_at: datetime
    speed: float
    paused_seconds: float = 0.0
    pauses: tuple[tuple[datetime, datetime | None], ...] = ()

    def _lump(self) -> float:
        known = sum((end - start).total_seconds() for start, end in self.pauses if end)
        return max(self.paused_seconds - known, 0.0)

    def seconds(self, at: datetime) -> float:
        """The scenario seconds at wall instant ``at`` (never below zero)."""
        at = as_utc(at)
        wall = (at - self.started_at).total_seconds()
        paused = min(self._lump(), max(wall, 0.0))
        for start, end in self.pauses:
            lo, hi = max(start, self.started_at), min(end or at, at)
            paused += max((hi - lo).total_seconds(), 0.0)
        return max((wall - paused) * self.speed, 0.0)

    def wall_at(self, seconds: float) -> datetime | None:
        """The first wall instant at which scenario time reaches ``seconds``; None if it
        falls in a pause that has not ended."""
        remaining = seconds / self.speed
        cursor = self.started_at + timedelta(seconds=self._lump())
        for start, end in sorted(self.pauses, key=lambda p: p[0]):
            if start < cursor:
                if end is None:
                    return None
                cursor = max(cursor, end)
                continue
            running = (start - cursor).total_seconds()
            if remaining <= running:
                break
            remaining -= running
            if end is None:
                return None
            cursor = end
        return cursor + timedelta(seconds=remaining)


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionResult:
    id: str
    action: str
    to: str | None
    card: str | None
    target_seconds: float | None
    target_at: datetime | None
    met: bool | None
    actual_at: datetime | None
    actual_seconds: float | None
    incident_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "to": self.to,
            "card": self.card,
            "target_seconds": self.target_seconds,
            "target_at": self.target_at,
            "met": self.met,
            "actual_at": self.actual_at,
            "actual_seconds": self.actual_seconds,
            "incident_id": self.incident_id,
        }


@dataclass(frozen=True)
class SeenViolation:
    """A principle broken at some moment of the exercise (first seen then)."""

    incident_id: str
    code: str
    principle: str | None
    field: str
    message: str
    message_en: str
    seq: int | None
    first_seen_at: datetime
    first_seen_seconds: float


@dataclass(frozen=True)
class ObservationRow:
    at: datetime
    seconds: float
    actor: str
    text: str


@dataclass
class Evaluation:
    exercise_id: str
    scenario_id: str
    title: str
    title_en: str
    started_at: datetime | None
    ended_at: datetime | None
    measured_until: datetime
    speed: float
    paused_seconds: float
    elapsed_seconds: float | None
    expected_actions: tuple[ActionResult, ...]
    violations: tuple[SeenViolation, ...]
    deliveries: dict[str, Any]
    incidents: tuple[dict[str, Any], ...]
    observations: tuple[ObservationRow, ...]
    #: The exercise's entries, for the course chart (not part of the JSON).
    course: tuple[LogEntry, ...] = field(default=(), repr=False)

    @property
    def counts(self) -> dict[str, int]:
        results = [a.met for a in self.expected_actions]
        return {
            "met": sum(1 for m in results if m is True),
            "missed": sum(1 for m in results if m is False),
            "pending": sum(1 for m in results if m is None),
            "total": len(results),
        }

    def as_dict(self) -> dict[str, Any]:
        out = {
            "exercise_id": self.exercise_id,
            "exercise": True,
            "scenario_id": self.scenario_id,
            "title": self.title,
            "title_en": self.title_en,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "measured_until": self.measured_until,
            "speed": self.speed,
            "paused_seconds": self.paused_seconds,
            "elapsed_seconds": self.elapsed_seconds,
            "counts": self.counts,
            "expected_actions": [a.as_dict() for a in self.expected_actions],
            "violations": [v.__dict__ for v in self.violations],
            "deliveries": self.deliveries,
            "incidents": list(self.incidents),
            "observations": [o.__dict__ for o in self.observations],
        }
        return dict(_jsonable(out))


def _jsonable(value: Any) -> Any:
    """Instants as UTC ISO 8601 (as the metrics' own JSON), everything else as it is."""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- mapping the actions onto the metrics ------------------------------------------------


def _task_done_at(entries: Sequence[LogEntry], card: str) -> datetime | None:
    """When a task of playbook card ``card`` was first done (tasks without a deadline are
    not in the metrics' task list, so the log is read for them)."""
    seqs: set[int] = set()
    for e in entries:
        d = e.data or {}
        if e.kind == EntryKind.TASK and d.get("card") == card:
            seqs.add(e.seq)
            if d.get("status") == "done":
                return as_utc(e.at)
        elif (
            e.kind == EntryKind.TASK_UPDATE and d.get("task") in seqs and d.get("status") == "done"
        ):
            return as_utc(e.at)
    return None


def _moment(
    action: ExpectedLike, m: IncidentMetrics, entries: Sequence[LogEntry]
) -> datetime | None:
    """The instant of ``action`` in one incident, read from its metrics."""
    kind = action.action
    if kind == "incident_opened":
        return m.opened_at
    if kind == "owner_set":
        return m.owner_set_at
    if kind == "staff_alarm_delivered":
        return m.first_staff_delivered_at
    if kind == "staff_acknowledged":
        return m.first_ack_at
    if kind == "public_message":
        return m.first_public_at
    if kind == "escalated":
        return next(
            (e.at for e in m.escalations if action.to is None or e.to_level == action.to), None
        )
    if kind == "sitrep_approved":
        if m.first_sitrep_seconds is None:
            return None
        return m.start_at + timedelta(seconds=m.first_sitrep_seconds)
    if kind == "task_done":
        done = [t.done_at for t in m.tasks if t.card == action.card and t.done_at is not None]
        if done:
            return min(done)
        return _task_done_at(entries, action.card or "")
    raise ValueError(f"unknown expected action {kind!r} (known: {', '.join(ACTIONS)})")


def _judge(
    action: ExpectedLike,
    rows: Sequence[tuple[IncidentMetrics, Sequence[LogEntry]]],
    clock: ScenarioClock | None,
    until: datetime,
    ended: bool,
) -> ActionResult:
    target = action.within.total_seconds() if action.within is not None else None

    def result(met: bool | None, when: datetime | None, incident_id: str | None) -> ActionResult:
        return ActionResult(
            id=action.id,
            action=action.action,
            to=action.to,
            card=action.card,
            target_seconds=target,
            target_at=clock.wall_at(target) if clock and target is not None else None,
            met=met,
            actual_at=when,
            actual_seconds=clock.seconds(when) if clock and when else None,
            incident_id=incident_id,
        )

    if clock is None:  # not started: nothing is decided
        return result(None, None, None)
    if action.action == "staff_before_public":
        broken = sorted(
            (m.first_public_at, m.incident_id)
            for m, _ in rows
            if m.staff_before_public is False and m.first_public_at is not None
        )
        if broken:
            return result(False, *broken[0])
        return result(True if ended else None, None, None)
    found = sorted(
        (when, m.incident_id)
        for m, entries in rows
        if (when := _moment(action, m, entries)) is not None
    )
    if found:
        when, incident_id = found[0]
        return result(True if target is None else clock.seconds(when) <= target, when, incident_id)
    passed = ended or (target is not None and clock.seconds(until) > target)
    return result(False if passed else None, None, None)


# --- violations, deliveries ---------------------------------------------------------------


def _is_receipt(e: LogEntry) -> bool:
    return e.kind == EntryKind.MESSAGE and e.actor == NOTIFIER_ACTOR and "status" in (e.data or {})


def _spread(times: set[datetime], most: int) -> set[datetime]:
    ordered = sorted(times)
    if len(ordered) <= most:
        return set(ordered)
    step = len(ordered) / most
    return {ordered[int(k * step)] for k in range(most)}


def _sample_times(entries: Sequence[LogEntry], until: datetime) -> list[datetime]:
    """The moments the board's violations can change: a second after each deadline, due
    time and promised update, each entry (receipts aside) and the end; past the budget the
    deadlines are kept before the entries."""
    moments: set[datetime] = set()
    due: set[datetime] = set()
    for e in entries:
        if _is_receipt(e):
            continue
        moments.add(as_utc(e.at))
        d = e.data or {}
        for key in ("deadline", "due", "next_update_at"):
            raw = d.get(key)
            if isinstance(raw, str) and raw:
                try:
                    when = as_utc(raw) + timedelta(seconds=1)
                except (TypeError, ValueError):
                    continue
                if when <= until:
                    due.add(when)
    kept = _spread(due, _MAX_SAMPLES - 1)
    kept |= _spread(moments - kept, _MAX_SAMPLES - 1 - len(kept))
    return sorted(kept | {until})


def _violations(
    incident: Incident,
    entries: Sequence[LogEntry],
    m: IncidentMetrics,
    clock: ScenarioClock,
    until: datetime,
) -> list[SeenViolation]:
    """Replay the incident row (as ``crisis.review.replay`` does) once through the log and
    check the standing violations at each sample time on the entries up to it."""
    seen: dict[tuple[str, str, int | None], SeenViolation] = {}
    row = _opening(incident, entries)
    upto: list[LogEntry] = []
    pending = iter(sorted(entries, key=lambda e: (as_utc(e.at), e.seq)))
    entry = next(pending, None)
    for t in _sample_times(entries, until):
        while entry is not None and as_utc(entry.at) <= t:
            projection.apply_entry(row, entry)
            if not _is_receipt(entry):  # receipts change no standing violation
                upto.append(entry)
            entry = next(pending, None)
        if not upto:
            continue
        for v in rules.standing_violations(incident=row, entries=upto, now=t):
            key = (v.code, v.field, v.seq)
            if key not in seen:
                seen[key] = SeenViolation(
                    incident_id=incident.id,
                    code=v.code,
                    principle=v.principle,
                    field=v.field,
                    message=v.message,
                    message_en=v.message_en,
                    seq=v.seq,
                    first_seen_at=t,
                    first_seen_seconds=clock.seconds(t),
                )
    if m.staff_before_public is False and m.first_public_at is not None:
        seen[("public_before_staff", "group", None)] = SeenViolation(
            incident_id=incident.id,
            code="public_before_staff",
            principle="krisekommunikasjon",
            field="group",
            message="En melding til media eller publikum gikk ut før de ansatte var varslet.",
            message_en="A media or public message went out before the staff had been told.",
            seq=None,
            first_seen_at=m.first_public_at,
            first_seen_seconds=clock.seconds(m.first_public_at),
        )
    return sorted(seen.values(), key=lambda v: (v.first_seen_at, v.incident_id, v.code))


def _deliveries(rows: Sequence[tuple[IncidentMetrics, Sequence[LogEntry]]]) -> dict[str, Any]:
    """Messages by their last status, acknowledgement times (first sent → acknowledged), and
    the metrics' own counts (failed attempts, blocked for non-participants, …) summed."""
    last: dict[Any, str] = {}
    groups: dict[Any, str] = {}
    sent_at: dict[Any, datetime] = {}
    ack_at: dict[Any, datetime] = {}
    for m, entries in rows:
        for e in entries:
            d = e.data or {}
            if not _is_receipt(e):
                continue
            key = (m.incident_id, d.get("message_id") or (d.get("update_id"), d.get("recipient")))
            status = str(d["status"])
            last[key] = status
            groups[key] = str(d.get("group") or "-")
            if status in DELIVERED:
                sent_at.setdefault(key, as_utc(e.at))
            if status == "acknowledged":
                ack_at.setdefault(key, as_utc(e.at))
    ack_seconds = [(ack_at[k] - sent_at[k]).total_seconds() for k in ack_at if k in sent_at]
    by_group: dict[str, dict[str, int]] = {}
    for key, status in last.items():
        counts = by_group.setdefault(groups[key], {})
        counts[status] = counts.get(status, 0) + 1
    summed = (
        {
            name: sum(getattr(m.deliveries, name) for m, _ in rows)
            for name in type(rows[0][0].deliveries).__dataclass_fields__
        }
        if rows
        else {}
    )
    return {
        "messages": len(last),
        "sent": sum(1 for k in last if k in sent_at),
        "failed": sum(1 for s in last.values() if s == "failed"),
        "blocked": sum(1 for s in last.values() if s == "blocked"),
        "held": sum(1 for s in last.values() if s == "held"),
        "acknowledged": len(ack_at),
        "staff_sent": sum(1 for k in last if k in sent_at and groups[k] in STAFF_GROUPS),
        "public_sent": sum(1 for k in last if k in sent_at and groups[k] in PUBLIC_GROUPS),
        "ack_seconds": summary(ack_seconds),
        "by_group": dict(sorted(by_group.items())),
        "metrics": summed,
    }


# --- the evaluation ----------------------------------------------------------------------


def evaluate(
    *,
    scenario: ScenarioLike,
    started_at: datetime | None,
    speed: float,
    paused_seconds: float,
    ended_at: datetime | None,
    incidents: Iterable[Incident],
    entries: Mapping[str, Sequence[LogEntry]],
    observations: Iterable[ObservationLike],
    now: datetime,
    exercise_id: str = "",
    pauses: Sequence[tuple[datetime, datetime | None]] = (),
    with_violations: bool = True,
) -> Evaluation:
    """The evaluation of one exercise at ``now`` (its end, once ended).

    ``incidents`` are the exercise's incidents, ``entries`` each one's log entries in seq
    order (by incident id); entries after the end are not counted. ``paused_seconds`` is the
    wall time paused in ended pauses (``Exercise.paused_seconds``); ``pauses`` the intervals
    known, the current one ``(paused_at, None)``. Ended pauses known only by their total are
    taken as before any action: exact for actions after them. ``with_violations=False``
    skips the violations (the costly part) where only the actions are wanted.
    """
    until = as_utc(ended_at) if ended_at is not None else as_utc(now)
    clock = (
        ScenarioClock(
            started_at=as_utc(started_at),
            speed=speed,
            paused_seconds=paused_seconds,
            pauses=tuple((as_utc(a), as_utc(b) if b else None) for a, b in pauses),
        )
        if started_at is not None
        else None
    )
    rows: list[tuple[IncidentMetrics, Sequence[LogEntry]]] = []
    found: list[SeenViolation] = []
    summaries: list[dict[str, Any]] = []
    course: list[LogEntry] = []
    for incident in sorted(incidents, key=lambda i: (as_utc(i.opened_at), i.id)):
        kept = [e for e in entries.get(incident.id, ()) if as_utc(e.at) <= until]
        m = incident_metrics(incident=incident, entries=kept, now=until)
        rows.append((m, kept))
        course += kept
        if with_violations and clock is not None and kept:
            found += _violations(incident, kept, m, clock, until)
        summaries.append(
            {
                "id": incident.id,
                "title": incident.title,
                "type": incident.type,
                "unit": incident.unit,
                "status": incident.status,
                "level": incident.level,
                "opened_at": incident.opened_at,
                "metrics": m.as_dict(),
            }
        )
    results = tuple(_judge(a, rows, clock, until, ended_at is not None) for a in scenario.expected)
    return Evaluation(
        exercise_id=exercise_id,
        scenario_id=scenario.id,
        title=scenario.title,
        title_en=scenario.title_en,
        started_at=clock.started_at if clock else None,
        ended_at=as_utc(ended_at) if ended_at is not None else None,
        measured_until=until,
        speed=speed,
        paused_seconds=paused_seconds,
        elapsed_seconds=clock.seconds(until) if clock else None,
        expected_actions=results,
        violations=tuple(sorted(found, key=lambda v: (v.first_seen_at, v.incident_id))),
        deliveries=_deliveries(rows),
        incidents=tuple(summaries),
        observations=tuple(
            ObservationRow(
                at=as_utc(o.at),
                seconds=clock.seconds(o.at) if clock else 0.0,
                actor=o.actor,
                text=o.text,
            )
            for o in sorted(observations, key=lambda o: as_utc(o.at))
        ),
        course=tuple(sorted(course, key=lambda e: (as_utc(e.at), e.incident_id, e.seq))),
    )


# --- rendering ---------------------------------------------------------------------------

LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "nb": {
        "exercise": "ØVELSE",
        "title": "Evaluering av øvelse",
        "scenario": "Scenario",
        "started": "Startet",
        "ended": "Avsluttet",
        "running": "pågår",
        "measured": "Målt til",
        "speed": "Hastighet",
        "paused": "Pause (veggtid)",
        "elapsed": "Scenariotid",
        "times_note": "Tider i Europe/Oslo; UTC i parentes. Scenariotid regnes fra start, "
        "uten pauser, ganget med hastigheten.",
        "expected": "Forventede handlinger",
        "action": "Handling",
        "target": "Mål (scenariotid)",
        "actual": "Faktisk",
        "result": "Resultat",
        "met": "oppfylt",
        "missed": "ikke oppfylt",
        "pending": "ikke avgjort",
        "counts": "oppfylt {met}, ikke oppfylt {missed}, ikke avgjort {pending} av {total}",
        "violations": "Brudd på prinsippene",
        "principle": "Prinsipp",
        "first_seen": "Først sett",
        "incident": "Hendelse",
        "deliveries": "Varsling og kvittering",
        "messages": "Meldinger",
        "sent": "Sendt",
        "failed": "Feilet",
        "blocked": "Stoppet (ikke deltaker)",
        "held": "Holdt tilbake",
        "acknowledged": "Kvittert",
        "ack_times": "Tid fra sendt til kvittert",
        "median": "median",
        "p90": "90-persentil",
        "max": "lengste",
        "by_group": "Per gruppe",
        "group": "Gruppe",
        "course": "Forløp",
        "observations": "Øvingsleders observasjoner",
        "by": "Av",
        "text": "Observasjon",
        "incidents": "Hendelser i øvelsen",
        "none": "Ingen registrert.",
        "no_violations": "Ingen brudd sett.",
        "never": "–",
    },
    "en": {
        "exercise": "EXERCISE (ØVELSE)",
        "title": "Exercise evaluation",
        "scenario": "Scenario",
        "started": "Started",
        "ended": "Ended",
        "running": "running",
        "measured": "Measured until",
        "speed": "Speed",
        "paused": "Paused (wall time)",
        "elapsed": "Scenario time",
        "times_note": "Times in Europe/Oslo; UTC in brackets. Scenario time counts from the "
        "start, pauses left out, times the speed.",
        "expected": "Expected actions",
        "action": "Action",
        "target": "Target (scenario time)",
        "actual": "Actual",
        "result": "Result",
        "met": "met",
        "missed": "missed",
        "pending": "not decided",
        "counts": "met {met}, missed {missed}, not decided {pending} of {total}",
        "violations": "Violations of the principles",
        "principle": "Principle",
        "first_seen": "First seen",
        "incident": "Incident",
        "deliveries": "Notification and acknowledgement",
        "messages": "Messages",
        "sent": "Sent",
        "failed": "Failed",
        "blocked": "Blocked (not a participant)",
        "held": "Held back",
        "acknowledged": "Acknowledged",
        "ack_times": "Time from sent to acknowledged",
        "median": "median",
        "p90": "90th percentile",
        "max": "longest",
        "by_group": "Per group",
        "group": "Group",
        "course": "Course",
        "observations": "Controller's observations",
        "by": "By",
        "text": "Observation",
        "incidents": "Incidents of the exercise",
        "none": "None recorded.",
        "no_violations": "No violation seen.",
        "never": "–",
    },
}

#: The expected actions' names (bokmål, English).
ACTION_LABELS: Final[Mapping[str, tuple[str, str]]] = {
    "incident_opened": ("Hendelse opprettet", "Incident opened"),
    "owner_set": ("Eier og ansvarlig satt", "Owner and accountable set"),
    "staff_alarm_delivered": ("Varsel levert til ansatte", "Staff alarm delivered"),
    "staff_acknowledged": ("Varsel kvittert av ansatte", "Staff alarm acknowledged"),
    "escalated": ("Eskalert til", "Escalated to"),
    "sitrep_approved": ("Første sitrap godkjent", "First sitrep approved"),
    "public_message": ("Første melding til publikum", "First public message"),
    "task_done": ("Tiltak utført", "Task done"),
    "staff_before_public": ("Ansatte varslet før publikum", "Staff told before the public"),
}


def action_label(result: ActionResult, lang: str) -> str:
    word = ACTION_LABELS.get(result.action, (result.action, result.action))[lang == "en"]
    if result.action == "escalated" and result.to:
        return f"{word} {result.to}"
    if result.action == "task_done" and result.card:
        return f"{word}: {result.card}"
    return word


_ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["oslo"] = review_report._oslo
_ENV.filters["duration"] = format_duration
STYLESHEET: Final = (
    review_report.STYLESHEET + "\n" + (TEMPLATES / "evaluation.css").read_text(encoding="utf-8")
)
#: The CSP source of the inline stylesheet: the HTML served to a browser allows it alone.
STYLE_HASH: Final = (
    "'sha256-" + base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode() + "'"
)


def render_json(evaluation: Evaluation) -> bytes:
    return json.dumps(evaluation.as_dict(), ensure_ascii=False, indent=1).encode("utf-8")


def render_html(evaluation: Evaluation, *, lang: Lang = "nb", now: datetime | None = None) -> str:
    return _ENV.get_template("evaluation.html").render(
        ev=evaluation,
        lang=lang,
        t=LABELS[lang],
        counts=LABELS[lang]["counts"].format(**evaluation.counts),
        label=lambda r: action_label(r, lang),
        chart=course_svg(entries=evaluation.course, lang=lang, id_prefix="exercise-course"),
        css=STYLESHEET,
        generated_at=now or evaluation.measured_until,
    )


def render_pdf(evaluation: Evaluation, *, lang: Lang = "nb", html: str | None = None) -> bytes:
    """The same HTML through WeasyPrint, with the report's local-only fetcher."""
    from weasyprint import HTML

    document = HTML(
        string=html if html is not None else render_html(evaluation, lang=lang),
        base_url=str(review_report.TEMPLATES),
        url_fetcher=review_report._local_fetcher(),
    )
    pdf: bytes = document.write_pdf()
    return pdf


def render(evaluation: Evaluation, fmt: Format, *, lang: Lang = "nb") -> bytes:
    if fmt == "json":
        return render_json(evaluation)
    if fmt == "html":
        return render_html(evaluation, lang=lang).encode("utf-8")
    return render_pdf(evaluation, lang=lang)


def file_name(evaluation: Evaluation, fmt: Format, *, lang: Lang = "nb") -> str:
    """``ovelse-evaluering-<exercise>.<fmt>`` (``exercise-evaluation-…`` in English)."""
    ident = evaluation.exercise_id or evaluation.scenario_id
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", ident).strip("._") or "exercise"
    stamp = evaluation.measured_until.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    prefix = "ovelse-evaluering" if lang == "nb" else "exercise-evaluation"
    return f"{prefix}-{safe}-{stamp}.{fmt}"


# --- reading an exercise -----------------------------------------------------------------


async def exercise_incidents(session: AsyncSession, *, exercise_id: str) -> list[Incident]:
    """The incidents an exercise's events opened (open or closed), by opening."""
    rows = await session.exec(
        select(Incident)
        .where(Incident.exercise == exercise_id)
        .order_by(col(Incident.opened_at), col(Incident.id))
    )
    return list(rows.all())


async def evaluation_of(
    session: AsyncSession,
    *,
    exercise_id: str,
    org: Organisation,
    now: datetime | None = None,
    incidents: Sequence[Incident] | None = None,
    with_violations: bool = True,
) -> Evaluation:
    """Read the exercise, its scenario (the text run), incidents, log and observations, and
    evaluate it. Raises ``crisis.exercises.service.ExerciseNotFound``; a scenario the
    organisation no longer validates raises ``ScenarioError``."""
    exercise = await exercises.get(session, exercise_id=exercise_id)
    parsed = load_scenario(exercise.scenario_yaml, org=org, name=f"<{exercise.id}>")
    if incidents is None:
        incidents = await exercise_incidents(session, exercise_id=exercise.id)
    entries = {i.id: await log.timeline(session, i.id) for i in incidents}
    return evaluate(
        scenario=parsed,
        started_at=exercise.started_at,
        speed=exercise.speed,
        paused_seconds=exercise.paused_seconds,
        ended_at=exercise.ended_at,
        incidents=incidents,
        entries=entries,
        observations=await exercises.observations(session, exercise_id=exercise.id),
        now=now or utcnow(),
        exercise_id=exercise.id,
        pauses=tuple(exercises.pause_intervals(exercise)),
        with_violations=with_violations,
    )
