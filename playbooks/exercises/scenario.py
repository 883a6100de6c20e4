"""Exercise scenarios: the YAML format, its validation, the parsed model and the inject events.

A scenario is a script for an exercise controller (*øvingsledelse*): timed injects (sensor
events, staff reports, media articles, CAP warnings, text to read out) and the actions the
staff are expected to take, with target times. Like the playbooks it is written by people, so
every problem is reported at once as ``file:line: field: message``, and it is checked against
the organisation (units), the recipients file (people) and the event catalogue before anything
runs. :func:`inject_events` turns an inject into the raw CloudEvents the ingest would make from
the same report, article or alert, marked with the exercise id.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal, cast

import yaml

from crisis.domain.organisation import Organisation
from crisis.sources import cap, catalogue, media, reports
from crisis.sources.events import EventError, validate_event
from crisis.sources.incident_types import REPORT_CATEGORIES
from crisis.yamlsource import (
    JsonPath,
    Problem,
    SourceError,
    duplicate_keys,
    line_of,
    parse,
    raise_if_any,
    schema_problems,
    schema_validator,
)
from playbooks.duration import parse_duration
from playbooks.loader import load_library

__all__ = [
    "ACTIONS",
    "INJECT_FIELDS",
    "INJECT_TYPES",
    "ExpectedAction",
    "Inject",
    "Participant",
    "Scenario",
    "ScenarioError",
    "inject_events",
    "load_scenario",
    "scenario_dir",
    "schema_path",
    "sensor_kinds",
    "shipped",
]

_HERE: Final = Path(__file__).resolve().parent

InjectType = Literal["sensor", "report", "media", "cap", "text"]
INJECT_TYPES: Final[tuple[str, ...]] = ("sensor", "report", "media", "cap", "text")
#: Fields every inject has, whatever its type.
_COMMON: Final = ("id", "at", "type", "unit")
#: Each inject type's own fields: (required, optional).
INJECT_FIELDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "sensor": (("event",), ("data",)),
    "report": (("category", "place", "what"), ("affected", "severity", "reporter")),
    "media": (("title", "url"), ("summary", "outlet", "sentiment", "key_media")),
    "cap": (("xml",), ()),
    "text": (("text",), ()),
}
#: The expected actions the evaluation knows (each maps onto crisis.review.metrics).
ACTIONS: Final[tuple[str, ...]] = (
    "incident_opened",
    "owner_set",
    "staff_alarm_delivered",
    "staff_acknowledged",
    "escalated",
    "sitrep_approved",
    "public_message",
    "task_done",
    "staff_before_public",
)
#: Actions that are rules over the whole exercise, not deeds with a target time.
_RULES: Final = ("staff_before_public",)
#: Who sends a scripted report when the inject names nobody.
_DEFAULT_REPORTER: Final = "ovelsesleder"
#: The fixed start used to check injects at load (the events are built, then thrown away).
_CHECK_START: Final = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_CHECK_EXERCISE: Final = "scenario-check"


class ScenarioError(SourceError):
    """A scenario problem pinned to file, line and field (all problems in ``problems``)."""


@dataclass(frozen=True)
class Participant:
    kind: Literal["person", "account"]
    id: str


@dataclass(frozen=True)
class Inject:
    """One timed inject. ``data``: the type's fields (a sensor's: the event's data)."""

    id: str
    at: timedelta
    type: InjectType
    unit: str | None
    event: str | None
    data: Mapping[str, Any]
    text: str | None
    line: int


@dataclass(frozen=True)
class ExpectedAction:
    """An action the staff should take; ``within`` in scenario time (None: by the end)."""

    id: str
    action: str
    within: timedelta | None
    to: str | None
    card: str | None
    line: int


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    title_en: str
    description: str
    units: tuple[str, ...]
    duration: timedelta | None
    participants: tuple[Participant, ...]
    injects: tuple[Inject, ...]
    expected: tuple[ExpectedAction, ...]
    source: str
    text: str = field(default="", repr=False, compare=False)


def scenario_dir() -> Path:
    """Where the shipped scenarios live (``playbooks/exercises``)."""
    return _HERE


def schema_path() -> Path:
    return _HERE / "scenario.schema.json"


def shipped() -> dict[str, Path]:
    """The shipped scenarios: id (= file stem) → path, sorted by id."""
    return {p.stem: p for p in sorted(_HERE.glob("*.yaml"))}


@lru_cache(maxsize=1)
def _validator() -> Any:
    return schema_validator(json.loads(schema_path().read_text(encoding="utf-8")))


def sensor_kinds() -> dict[str, catalogue.EventKind]:
    """The sensor event kinds an inject may name: ``fire_alarm`` (or ``sensor.fire_alarm``)."""
    out: dict[str, catalogue.EventKind] = {}
    for kind in catalogue.kinds():
        if kind.sensor:
            out[kind.sensor] = kind
    return out


def _sensor_kind(name: str) -> catalogue.EventKind | None:
    return sensor_kinds().get(name.removeprefix("sensor."))


_CARDS: dict[int, tuple[Organisation, frozenset[str]]] = {}


def _card_ids(org: Organisation) -> frozenset[str]:
    """Every card id of the shipped playbook library (loaded once per organisation)."""
    cached = _CARDS.get(id(org))
    if cached is None or cached[0] is not org:
        library = load_library(org=org)
        cards = frozenset(c.id for p in library.playbooks.values() for c in p.cards)
        cached = _CARDS[id(org)] = (org, cards)
    return cached[1]


# -- cross-checks ------------------------------------------------------------------------


class _Checker:
    """Collects problems; paths the schema already faulted are not reported twice."""

    def __init__(self, root: yaml.Node | None, faulted: set[JsonPath]) -> None:
        self.root = root
        self.faulted = faulted
        self.out: list[Problem] = []

    def add(self, path: JsonPath, message: str, *, at_key: bool = False) -> None:
        if any(path[: len(f)] == f for f in self.faulted if f):
            return
        self.out.append((path, line_of(self.root, path, at_key=at_key), message))

    def duration(self, raw: Any, path: JsonPath) -> timedelta | None:
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            return None
        try:
            return parse_duration(raw)
        except ValueError as exc:
            self.add(path, str(exc))
            return None


def _check_inject_fields(item: dict[str, Any], path: JsonPath, check: _Checker) -> None:
    required, optional = INJECT_FIELDS[item["type"]]
    allowed = (*_COMMON, *required, *optional)
    for key in item:
        if key not in allowed:
            check.add(
                (*path, key),
                f"field {key!r} does not belong to a {item['type']} inject "
                f"(allowed: {', '.join(allowed)})",
                at_key=True,
            )
    for key in required:
        if key not in item:
            check.add((*path, key), f"required for a {item['type']} inject", at_key=True)


def _check_cap(
    xml: str, path: JsonPath, units: list[str], org: Organisation, check: _Checker
) -> bool:
    try:
        alert = cap.parse_alert(xml.encode("utf-8"))
    except cap.CapError as exc:
        shown = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors[:3])
        more = f" (and {len(exc.errors) - 3} more)" if len(exc.errors) > 3 else ""
        check.add(path, f"not a valid CAP 1.2 alert: {shown}{more}")
        return False
    if alert.status != "Exercise":
        check.add(
            path,
            f"status {alert.status} cannot be injected into an exercise; "
            "an exercise inject uses <status>Exercise</status>",
        )
        return False
    reached = cap.affected_units(alert, list(org.units.values()))
    if not reached:
        check.add(path, "the alert's areas reach no unit of the organisation")
        return False
    outside = sorted(set(reached) - set(units))
    if outside:
        check.add(
            path,
            f"the alert's areas also reach {', '.join(outside)}, not among the scenario's "
            "units (add them to 'units' or narrow the polygon)",
        )
        return False
    return True


def _event_problems(
    inject: Inject, i: int, scenario: Scenario, org: Organisation, check: _Checker
) -> None:
    """Build the inject's events and validate them as the ingest would."""
    try:
        events = inject_events(
            inject,
            scenario=scenario,
            exercise_id=_CHECK_EXERCISE,
            started_at=_CHECK_START,
            org=org,
        )
    except (ValueError, cap.CapError) as exc:
        check.add(("injects", i), str(exc))
        return
    for raw in events:
        try:
            validate_event(raw, known_units=set(org.units))
        except EventError as exc:
            for err in exc.errors:
                name = str(err["field"])
                if name.startswith("data."):
                    parts = tuple(name.removeprefix("data.").split("."))
                    where: JsonPath = ("injects", i)
                    where += ("data", *parts) if inject.type == "sensor" else parts[:1]
                else:
                    where = ("injects", i)
                check.add(where, str(err["message"]))


def _cross_problems(
    data: dict[str, Any],
    check: _Checker,
    org: Organisation,
    people: Collection[str] | None,
    accounts: Collection[str] | None,
) -> None:
    units = [u for u in data.get("units", []) if isinstance(u, str)]
    for i, unit in enumerate(data.get("units", [])):
        if isinstance(unit, str) and unit not in org.units:
            check.add(("units", i), f"unknown unit {unit!r} (see the organisation file)")
        elif unit in units[:i]:
            check.add(("units", i), f"unit {unit!r} is listed twice")
    duration = check.duration(data.get("duration"), ("duration",)) if "duration" in data else None

    seen_people: set[tuple[str, str]] = set()
    for i, part in enumerate(data.get("participants", [])):
        if not isinstance(part, dict) or len(part) != 1:
            continue
        [(kind, pid)] = part.items()
        if not isinstance(pid, str) or kind not in ("person", "account"):
            continue
        path: JsonPath = ("participants", i, kind)
        known = people if kind == "person" else accounts
        if (kind, pid) in seen_people:
            check.add(path, f"{kind} {pid!r} is listed twice")
        elif known is not None and pid not in known:
            where = "the recipients file" if kind == "person" else "the user accounts"
            check.add(path, f"unknown {kind} {pid!r} (not in {where})")
        seen_people.add((kind, pid))

    card_ids: frozenset[str] | None = None
    seen: dict[str, int | None] = {}
    for section in ("injects", "expected"):
        seen.clear()
        for i, item in enumerate(data.get(section, [])):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            path = (section, i, "id")
            if item["id"] in seen:
                what = "inject" if section == "injects" else "expected action"
                check.add(
                    path, f"duplicate {what} id {item['id']!r} (first at line {seen[item['id']]})"
                )
            else:
                seen[item["id"]] = line_of(check.root, path)

    for i, item in enumerate(data.get("injects", [])):
        if not isinstance(item, dict):
            continue
        path = ("injects", i)
        at = check.duration(item.get("at"), (*path, "at")) if "at" in item else None
        if at is not None and duration is not None and at > duration:
            check.add(
                (*path, "at"),
                f"offset {item['at']} is beyond the scenario's duration {data['duration']}",
            )
        if item.get("type") not in INJECT_TYPES:
            continue
        _check_inject_fields(item, path, check)
        unit = item.get("unit")
        if isinstance(unit, str):
            if unit not in org.units:
                check.add((*path, "unit"), f"unknown unit {unit!r} (see the organisation file)")
            elif unit not in units:
                check.add(
                    (*path, "unit"),
                    f"unit {unit!r} is not among the scenario's units ({', '.join(units)})",
                )
        event = item.get("event")
        if item["type"] == "sensor" and isinstance(event, str) and _sensor_kind(event) is None:
            check.add(
                (*path, "event"),
                f"unknown sensor event kind {event!r} (known: {', '.join(sorted(sensor_kinds()))})",
            )
        category = item.get("category")
        if item["type"] == "report" and isinstance(category, str):
            if category.strip().lower() not in REPORT_CATEGORIES:
                check.add(
                    (*path, "category"),
                    f"unknown report category {category!r} (known: {', '.join(REPORT_CATEGORIES)})",
                )
        if item["type"] == "cap" and isinstance(item.get("xml"), str):
            _check_cap(item["xml"], (*path, "xml"), units, org, check)

    for i, item in enumerate(data.get("expected", [])):
        if not isinstance(item, dict) or item.get("action") not in ACTIONS:
            continue
        path = ("expected", i)
        action = item["action"]
        if "within" in item:
            within = check.duration(item["within"], (*path, "within"))
            if action in _RULES:
                check.add(
                    (*path, "within"),
                    f"{action} is a rule over the whole exercise; it takes no 'within'",
                    at_key=True,
                )
            elif within is not None and duration is not None and within > duration:
                check.add(
                    (*path, "within"),
                    f"target {item['within']} is beyond the scenario's duration {data['duration']}",
                )
        if action == "escalated" and "to" not in item:
            check.add((*path, "to"), "escalated needs 'to' (region, kdi or jd)", at_key=True)
        if action != "escalated" and "to" in item:
            check.add((*path, "to"), "'to' belongs only to an escalated action", at_key=True)
        if action == "task_done":
            if "card" not in item:
                check.add(
                    (*path, "card"), "task_done needs 'card' (a playbook card id)", at_key=True
                )
            elif isinstance(item["card"], str):
                if card_ids is None:
                    card_ids = _card_ids(org)
                if item["card"] not in card_ids:
                    check.add(
                        (*path, "card"), f"unknown card {item['card']!r} (no playbook has it)"
                    )
        elif "card" in item:
            check.add((*path, "card"), "'card' belongs only to a task_done action", at_key=True)


# -- building ----------------------------------------------------------------------------


def _inject(item: dict[str, Any], root: yaml.Node | None, i: int) -> Inject:
    kind = cast(InjectType, item["type"])
    fields = {k: v for k, v in item.items() if k not in _COMMON}
    data: Mapping[str, Any]
    if kind == "sensor":
        data = dict(item.get("data") or {})
    elif kind == "text":
        data = {}
    else:
        data = fields
    return Inject(
        id=item["id"],
        at=parse_duration(item["at"]),
        type=kind,
        unit=item.get("unit"),
        event=item.get("event"),
        data=data,
        text=item.get("text"),
        line=line_of(root, ("injects", i)) or 0,
    )


def _build(data: dict[str, Any], root: yaml.Node | None, source: str, text: str) -> Scenario:
    injects = [_inject(item, root, i) for i, item in enumerate(data["injects"])]
    expected = tuple(
        ExpectedAction(
            id=item["id"],
            action=item["action"],
            within=parse_duration(item["within"]) if "within" in item else None,
            to=item.get("to"),
            card=item.get("card"),
            line=line_of(root, ("expected", i)) or 0,
        )
        for i, item in enumerate(data.get("expected", []))
    )
    participants = tuple(
        Participant(kind=cast(Literal["person", "account"], kind), id=pid)
        for part in data.get("participants", [])
        for kind, pid in part.items()
    )
    return Scenario(
        id=data["id"],
        title=data["title"],
        title_en=data["title_en"],
        description=str(data.get("description", "")).strip(),
        units=tuple(data["units"]),
        duration=parse_duration(data["duration"]) if "duration" in data else None,
        participants=participants,
        injects=tuple(sorted(injects, key=lambda inj: inj.at)),
        expected=expected,
        source=source,
        text=text,
    )


def _read(path_or_text: str | Path, name: str) -> tuple[str, str]:
    is_path = isinstance(path_or_text, Path) or (
        "\n" not in path_or_text and path_or_text.endswith((".yaml", ".yml"))
    )
    if not is_path:
        return name, str(path_or_text)
    source = str(path_or_text)
    try:
        return source, Path(path_or_text).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("scenario file not found", path=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario file: {exc}", path=source) from None


def load_scenario(
    path_or_text: str | Path,
    *,
    org: Organisation,
    people: Collection[str] | None = None,
    accounts: Collection[str] | None = None,
    name: str = "<text>",
) -> Scenario:
    """Load and check one scenario (a path, or YAML text named ``name`` in errors).

    ``people``: the recipients file's person ids, ``accounts``: user account names; when given,
    participants must be among them. ScenarioError lists every problem found.
    """
    source, text = _read(path_or_text, name)
    root, data = parse(source, text, ScenarioError)
    if root is None:
        raise ScenarioError("file is empty; expected a scenario", path=source, line=1)
    raise_if_any(source, list(duplicate_keys(root)), ScenarioError)
    problems = list(schema_problems(_validator(), data, root))
    if not isinstance(data, dict):
        raise_if_any(source, problems, ScenarioError)
    check = _Checker(root, {p for p, _, _ in problems})
    _cross_problems(data, check, org, people, accounts)
    problems += check.out
    raise_if_any(source, problems, ScenarioError)
    scenario = _build(data, root, source, text)
    # The events of each inject are built and validated as the ingest would take them.
    by_id = {item["id"]: i for i, item in enumerate(data["injects"])}
    check = _Checker(root, set())
    for inject in scenario.injects:
        if inject.type in ("cap", "text"):
            continue  # a CAP document was checked above; text sends nothing
        _event_problems(inject, by_id[inject.id], scenario, org, check)
    raise_if_any(source, check.out, ScenarioError)
    return scenario


# -- inject → events ---------------------------------------------------------------------


def _shift(value: str | None, delta: timedelta) -> str | None:
    if value is None:
        return None
    return (datetime.fromisoformat(value) + delta).isoformat()


def inject_events(
    inject: Inject,
    *,
    scenario: Scenario,
    exercise_id: str,
    started_at: datetime,
    org: Organisation,
) -> list[dict[str, Any]]:
    """The raw CloudEvents of one inject (``text``: none), marked with ``exercise_id``.

    Source ``/exercises/{exercise_id}``, id the inject's (``-1``, ``-2`` … when it makes
    several), time ``started_at + inject.at``: the same exercise id gives the same events, so
    a repeated send is deduplicated by the ingest. Reports, articles and CAP warnings are built
    by the same functions as the report form, the media bridge and the CAP ingest.
    """
    if started_at.tzinfo is None:
        raise ValueError("started_at needs a time zone")
    if inject.type == "text":
        return []
    when = started_at + inject.at
    time = when.isoformat()
    source = f"/exercises/{exercise_id}"
    unit = inject.unit or scenario.units[0]
    if inject.type == "sensor":
        kind = _sensor_kind(inject.event or "")
        if kind is None:
            raise ValueError(f"unknown sensor event kind {inject.event!r}")
        return [
            {
                "specversion": "1.0",
                "id": inject.id,
                "source": source,
                "type": kind.type,
                "time": time,
                "subject": unit,
                "unit": unit,
                "datacontenttype": "application/json",
                "exercise": exercise_id,
                "data": dict(inject.data),
            }
        ]
    if inject.type == "report":
        return [
            reports.report_event(
                inject.data,
                reporter=str(inject.data.get("reporter") or _DEFAULT_REPORTER),
                unit=unit,
                event_id=inject.id,
                time=time,
                source=source,
                exercise=exercise_id,
            )
        ]
    if inject.type == "media":
        fields = {k: inject.data.get(k) for k in ("url", "title", "summary", "outlet")}
        fields |= {
            "published": time,
            "sentiment": inject.data.get("sentiment", "negative"),
            "key_media": inject.data.get("key_media"),
            "mentions_units": [unit],
        }
        return [
            media.article_event(
                fields,
                event_id=inject.id,
                source=source,
                time=time,
                unit=unit,
                exercise=exercise_id,
            )
        ]
    alert = cap.parse_alert(str(inject.data["xml"]).encode("utf-8"))
    in_area = cap.affected_units(alert, list(org.units.values()))
    events = cap.warning_events(alert, in_area, exercise=exercise_id)
    # The script's alert is moved to the exercise's clock: sent at the inject, same validity.
    delta = when - alert.sent
    for n, event in enumerate(events, start=1):
        event["id"] = inject.id if len(events) == 1 else f"{inject.id}-{n}"
        event["source"] = source
        event["time"] = time
        data = event["data"]
        data["sent"] = time
        for key in ("onset", "expires"):
            if data.get(key) is not None:
                data[key] = _shift(data[key], delta)
    return events
