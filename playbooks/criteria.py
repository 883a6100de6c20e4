"""Escalation criteria evaluated against what an incident's log says (nærhetsprinsippet).

The log is the only input: facts are read leniently from entry data, so an incident opened by
the stream worker, a person or a test is judged the same way. Every met condition comes back
as a sentence for the escalation entry's ``criteria``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from crisis.clock import as_utc
from crisis.domain.vocabulary import EntryKind
from crisis.log.models import Incident, LogEntry
from playbooks.duration import iso_duration, parse_duration
from playbooks.model import ESCALATION_LEVELS, Condition, Criteria, Playbook

#: Negative articles about an incident that make a media storm (issue 3 correlates the same).
MEDIA_STORM_NEGATIVE_ARTICLES: Final[int] = 3


#: Event data fields the engine reads when a writer put them flat into the entry's data.
_EVENT_FIELDS: Final[frozenset[str]] = frozenset(
    {"cell", "tag", "client_ref", "zone", "area", "category", "sentiment", "mentions_units"}
)


@dataclass(frozen=True)
class EventView:
    """The triggering event as an entry's data describes it (whatever the writer's shape)."""

    type: str | None = None
    source: str | None = None
    unit: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def event_view(data: Mapping[str, Any]) -> EventView:
    """Read ``event`` (an envelope) or flat ``event_type``/``source``/``unit``/``event_data``."""
    event = data.get("event") if isinstance(data.get("event"), Mapping) else {}
    assert isinstance(event, Mapping)
    inner = event.get("data") if isinstance(event.get("data"), Mapping) else None
    for key in ("event_data", "data"):
        if inner is None and isinstance(data.get(key), Mapping):
            inner = data[key]
    if inner is None:  # flat: the event's own fields next to the writer's
        inner = {k: v for k, v in data.items() if k in _EVENT_FIELDS}
    kind = event.get("type") or data.get("event_type")
    unit = event.get("unit") or event.get("subject") or data.get("event_unit") or data.get("unit")
    return EventView(
        type=str(kind) if kind else None,
        source=str(event.get("source") or data.get("source") or "") or None,
        unit=str(unit) if unit else None,
        data=dict(inner or {}),
    )


@dataclass
class Facts:
    """What the log says about the incident, for criteria."""

    severity: int
    opened_at: datetime
    impact: dict[str, int]
    flags: set[str]
    units: set[str]
    events: int
    negative_articles: int
    media_storm: bool


def facts_of(incident: Incident, entries: Iterable[LogEntry]) -> Facts:
    impact = dict(incident.impact or {})
    flags: set[str] = {"security_political"} if incident.security_political else set()
    units: set[str] = set()
    events = 0
    negative = 0
    for entry in entries:
        data = entry.data or {}
        raw_flags = data.get("flags")
        if isinstance(raw_flags, list):
            flags.update(str(f) for f in raw_flags)
        if isinstance(data.get("impact"), Mapping):
            for dim, grade in data["impact"].items():
                if isinstance(grade, int):
                    impact[dim] = max(grade, impact.get(dim, 0))
        for key in ("units", "affected_units"):
            if isinstance(data.get(key), list):
                units.update(str(u) for u in data[key])
        view = event_view(data)
        if entry.kind in (EntryKind.SOURCE_EVENT, EntryKind.INCIDENT_OPENED) and (
            view.type or view.source
        ):
            events += 1
            if view.unit:
                units.add(view.unit)
            mentions = view.data.get("mentions_units")
            if isinstance(mentions, list):
                units.update(str(u) for u in mentions)
            if view.type and view.type.endswith("media.article"):
                sentiment = view.data.get("sentiment") or data.get("sentiment")
                negative += sentiment == "negative"
    units = units or {incident.unit}  # the event's unit, not a later owner change
    storm = (
        "media_storm" in flags
        or incident.type == "media_storm"
        or negative >= MEDIA_STORM_NEGATIVE_ARTICLES
    )
    if storm:
        flags.add("media_storm")
    return Facts(
        severity=incident.severity,
        opened_at=as_utc(incident.opened_at),
        impact=impact,
        flags=flags,
        units=units,
        events=events,
        negative_articles=negative,
        media_storm=storm,
    )


def check_condition(condition: Condition, facts: Facts, now: datetime) -> str | None:
    """The sentence describing the met condition, or None when it is not met."""
    name, value = condition.name, condition.value
    if name == "always":
        return "alltid for denne hendelsestypen"
    if name == "severity_at_least" and facts.severity >= value:
        return f"alvorlighetsgrad {facts.severity} ≥ {value}"
    if name == "open_longer_than":
        limit = parse_duration(value)
        open_for = now - facts.opened_at
        if open_for > limit:
            rounded = timedelta(seconds=int(open_for.total_seconds()))
            return f"åpen i {iso_duration(rounded)} > {iso_duration(limit)}"
        return None
    if name == "units_affected_at_least" and len(facts.units) >= value:
        return f"{len(facts.units)} enheter berørt ≥ {value} ({', '.join(sorted(facts.units))})"
    if name == "events_at_least" and facts.events >= value:
        return f"{facts.events} hendelser/alarmer ≥ {value}"
    if name == "media_storm" and facts.media_storm:
        return f"mediestorm ({facts.negative_articles} negative artikler)"
    if name == "flag" and value in facts.flags:
        return f"flagg: {value}"
    if name == "impact_at_least":
        met = [
            f"{dim} {facts.impact.get(dim, 0)} ≥ {grade}"
            for dim, grade in value.items()
            if facts.impact.get(dim, 0) >= grade
        ]
        if len(met) == len(value):
            return "konsekvens: " + ", ".join(met)
    return None


def evaluate(criteria: Criteria, facts: Facts, now: datetime) -> list[str] | None:
    """The met conditions' sentences when the criteria hold, else None."""
    results = [check_condition(c, facts, now) for c in criteria.conditions]
    met = [r for r in results if r is not None]
    if criteria.mode == "all":
        return met if len(met) == len(results) else None
    return met or None


def time_limits(playbook: Playbook) -> list[timedelta]:
    """The ``open_longer_than`` limits of the playbook's escalation criteria: the only
    conditions that can become true without a new log entry."""
    return [
        parse_duration(c.value)
        for criteria in playbook.escalation.values()
        for c in criteria.conditions
        if c.name == "open_longer_than"
    ]


def required_level(playbook: Playbook, facts: Facts, now: datetime) -> tuple[str | None, list[str]]:
    """The highest level whose criteria hold (with the sentences), or (None, [])."""
    found: tuple[str | None, list[str]] = (None, [])
    for level in ESCALATION_LEVELS:
        criteria = playbook.escalation.get(level)
        met = evaluate(criteria, facts, now) if criteria else None
        if met:
            found = (level, met)
    return found
