"""The event-type catalogue: one declaration per event type, read by everything that needs one.

Each :class:`EventKind` says what an event type is: the model of its ``data`` (validation in
:mod:`crisis.sources.events`), the incident type it signals, the default severity and the title
of the incident it opens and the correlation rule that decides (:mod:`crisis.domain.correlation`),
and the names it has in bridge topics (:mod:`streams.bridges.mqtt`). No other module lists
event types: adding a sensor type is one :class:`EventKind` here (or :func:`register`) plus its
test.

Invariants (checked by :func:`register`): type names and bridge aliases are unique, an alias
never shadows a sensor's own name, and every incident type is one of the vocabulary's
(:data:`crisis.sources.incident_types.INCIDENT_TYPE_LABELS`) or the staff report's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from crisis.sources.incident_types import INCIDENT_TYPE_LABELS, REPORT_CATEGORIES

#: The namespace of every event type: ``no.kriminalomsorgen.sensor.breath_absent``.
PREFIX: Final = "no.kriminalomsorgen."

#: The incident type of a staff report whose category names no known kind of incident.
STAFF_REPORT_TYPE: Final = "staff_report"

#: The correlation rules of :class:`crisis.domain.correlation.Correlator`.
Correlation = Literal["alarm", "report", "heartbeat", "media", "cap"]

# --- the data of each event type --------------------------------------------------------


class EventData(BaseModel):
    """The ``data`` of an event: strict (unknown fields are errors), strings stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CellSensorData(EventData):
    """Breath or motion sensor in a cell: no breathing / no motion for a while."""

    cell: str = Field(min_length=1, max_length=40)
    department: str | None = Field(default=None, max_length=80)
    seconds_without_breath: int | None = Field(default=None, ge=0)
    seconds_without_motion: int | None = Field(default=None, ge=0)


class PersonalAlarmData(EventData):
    staff_id: str | None = Field(default=None, max_length=80)
    area: str | None = Field(default=None, max_length=80)
    department: str | None = Field(default=None, max_length=80)
    location: str | None = Field(default=None, max_length=200)


class ZoneData(EventData):
    """Fire alarm, perimeter breach, forced door: a zone, area or door of the unit."""

    zone: str | None = Field(default=None, max_length=80)
    area: str | None = Field(default=None, max_length=80)
    door: str | None = Field(default=None, max_length=80)
    department: str | None = Field(default=None, max_length=80)
    detail: str | None = Field(default=None, max_length=500)


class AnkleTagData(EventData):
    """Electronic monitoring (EK): the tag and, for zone events, the zone."""

    tag: str = Field(min_length=1, max_length=80)
    client_ref: str | None = Field(default=None, max_length=80)
    zone: str | None = Field(default=None, max_length=80)
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class ReverseViolenceData(AnkleTagData):
    protected_person_ref: str | None = Field(default=None, max_length=80)
    distance_m: float | None = Field(default=None, ge=0)


class HeartbeatData(EventData):
    gateway: str = Field(min_length=1, max_length=120)
    interval_seconds: int = Field(default=60, ge=1, le=3600)


class IncidentReportData(EventData):
    """A staff report: anyone may report (alle har ansvar)."""

    category: str = Field(min_length=1, max_length=80)
    place: str = Field(min_length=1, max_length=200)
    what: str = Field(min_length=1, max_length=10_000)
    affected: str | None = Field(default=None, max_length=2_000)
    reporter: str | None = Field(default=None, max_length=120)
    severity: int | None = Field(default=None, ge=1, le=5)
    # Who is involved, in the reference fields that need-to-know masks (crisis.log.privacy).
    inmate_ref: str | None = Field(default=None, max_length=80)
    victim_ref: str | None = Field(default=None, max_length=80)
    staff_ref: str | None = Field(default=None, max_length=80)


class MediaArticleData(EventData):
    url: str = Field(min_length=1, max_length=2_000)
    title: str = Field(min_length=1, max_length=500)
    outlet: str | None = Field(default=None, max_length=200)
    published: datetime | None = None
    summary: str | None = Field(default=None, max_length=10_000)
    sentiment: Literal["positive", "neutral", "negative"] = "neutral"
    key_media: bool = False
    mentions_units: list[str] = Field(default_factory=list)
    mentions_incidents: list[str] = Field(default_factory=list)


class CapWarningData(EventData):
    """One CAP 1.2 alert as it concerns one unit (the CAP ingest splits per affected unit)."""

    identifier: str = Field(min_length=1, max_length=500)
    sender: str = Field(min_length=1, max_length=500)
    sent: datetime
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"]
    msg_type: Literal["Alert", "Update", "Cancel", "Ack", "Error"]
    references: list[str] = Field(default_factory=list)
    event: str = Field(min_length=1, max_length=500)
    severity: Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"] = "Unknown"
    urgency: str | None = Field(default=None, max_length=40)
    certainty: str | None = Field(default=None, max_length=40)
    headline: str | None = Field(default=None, max_length=1_000)
    description: str | None = Field(default=None, max_length=10_000)
    instruction: str | None = Field(default=None, max_length=10_000)
    area_desc: str | None = Field(default=None, max_length=2_000)
    awareness_level: str | None = Field(default=None, max_length=120)
    language: str | None = Field(default=None, max_length=20)
    headline_en: str | None = Field(default=None, max_length=1_000)
    description_en: str | None = Field(default=None, max_length=10_000)
    onset: datetime | None = None
    expires: datetime | None = None
    # Added with the CAP ingest (crisis/sources/cap.py):
    awareness_type: str | None = Field(default=None, max_length=120)
    instruction_en: str | None = Field(default=None, max_length=10_000)
    web: str | None = Field(default=None, max_length=2_000)
    referenced_identifiers: list[str] = Field(default_factory=list)
    in_area: bool = Field(
        default=True, description="False: named only because a referenced alert reached it."
    )
    # Added with MET's profile (AllClear on an Update ends a warning):
    response_types: list[
        Literal[
            "Shelter",
            "Evacuate",
            "Prepare",
            "Execute",
            "Avoid",
            "Monitor",
            "Assess",
            "AllClear",
            "None",
        ]
    ] = Field(default_factory=list, max_length=9)


# --- the declaration --------------------------------------------------------------------


@dataclass(frozen=True)
class EventKind:
    """One event type: what its data is, what incident it opens and what bridges call it.

    ``title`` is a ``str.format`` template of the opened incident's title (an alarm's takes
    ``{area}`` and ``{unit}``, the unit's name); ``entry`` is the text of the entry an alarm adds
    when it joins an open incident (``{area}``). ``aliases`` are the sensor kinds that name the
    type in MQTT topics besides its own name (``pust`` for ``breath_absent``).
    """

    name: str  # short type, e.g. 'sensor.breath_absent'
    model: type[EventData]
    incident_type: str
    severity: int
    title: str
    correlation: Correlation = "alarm"
    entry: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def type(self) -> str:
        """The full type name an envelope carries."""
        return PREFIX + self.name

    @property
    def sensor(self) -> str | None:
        """'breath_absent' for 'sensor.breath_absent': its own name in topics; None if no sensor."""
        family, _, sensor = self.name.partition(".")
        return sensor if family == "sensor" else None


def _alarm(
    name: str,
    model: type[EventData],
    incident_type: str,
    severity: int,
    title: str,
    entry: str,
    *aliases: str,
) -> EventKind:
    return EventKind(name, model, incident_type, severity, title, "alarm", entry, aliases)


#: A heartbeat that arrives is no incident: the correlation opens one when a gateway falls
#: silent (its title takes ``{gateway}`` and ``{unit}``).
HEARTBEAT: Final = EventKind(
    "sensor.heartbeat",
    HeartbeatData,
    "infrastructure_outage",
    3,
    "IKT-bortfall: gateway {gateway} har sluttet å sende hjerteslag ({unit})",
    "heartbeat",
    aliases=("gateway",),
)

#: The shipped event types, in the order the published schema lists them.
CATALOGUE: Final[tuple[EventKind, ...]] = (
    _alarm(
        "sensor.breath_absent",
        CellSensorData,
        "breath_motion_absent",
        5,
        "Mulig selvmord eller overdose: ingen pust registrert ({area}, {unit})",
        "Pustesensor: ingen pust registrert ({area})",
        "breath",
        "pust",
    ),
    _alarm(
        "sensor.motion_absent",
        CellSensorData,
        "breath_motion_absent",
        5,
        "Mulig selvmord eller overdose: ingen bevegelse registrert ({area}, {unit})",
        "Bevegelsessensor: ingen bevegelse registrert ({area})",
        "motion",
        "bevegelse",
    ),
    _alarm(
        "sensor.personal_alarm",
        PersonalAlarmData,
        "violence_threat",
        4,
        "Personalarm utløst ({area}, {unit})",
        "Personalarm ({area})",
        "alarm",
        "personalarm",
    ),
    _alarm(
        "sensor.fire_alarm",
        ZoneData,
        "fire",
        4,
        "Brannalarm ({area}, {unit})",
        "Brannalarm ({area})",
        "fire",
        "brann",
    ),
    _alarm(
        "sensor.perimeter_breach",
        ZoneData,
        "escape",
        4,
        "Perimeterbrudd – mulig rømning ({area}, {unit})",
        "Perimeterbrudd ({area})",
        "perimeter",
    ),
    _alarm(
        "sensor.door_forced",
        ZoneData,
        "escape",
        3,
        "Dør brutt opp ({area}, {unit})",
        "Dør brutt opp ({area})",
        "door",
        "dor",
    ),
    _alarm(
        "sensor.ek_tamper",
        AnkleTagData,
        "ek_breach",
        3,
        "Elektronisk kontroll: manipulering av fotlenke ({area}, {unit})",
        "Fotlenke manipulert ({area})",
    ),
    _alarm(
        "sensor.ek_zone_violation",
        AnkleTagData,
        "ek_breach",
        3,
        "Elektronisk kontroll: sonebrudd ({area}, {unit})",
        "Sonebrudd ({area})",
    ),
    _alarm(
        "sensor.ek_signal_lost",
        AnkleTagData,
        "ek_breach",
        2,
        "Elektronisk kontroll: signal tapt ({area}, {unit})",
        "Signal fra fotlenke tapt ({area})",
    ),
    _alarm(
        "sensor.reverse_violence_alarm",
        ReverseViolenceData,
        "reverse_violence_alarm",
        5,
        "Omvendt voldsalarm: forbudt person nærmer seg beskyttet person ({area}, {unit})",
        "Omvendt voldsalarm ({area})",
        "reverse_violence",
    ),
    HEARTBEAT,
    # Refined by the report's category (REPORT_CATEGORIES); severity: the report's, else this.
    EventKind(
        "report.incident",
        IncidentReportData,
        STAFF_REPORT_TYPE,
        3,
        "Hendelsesrapport: {category} – {place} ({unit})",
        "report",
    ),
    EventKind(
        "media.article",
        MediaArticleData,
        "media_storm",
        3,
        "Mediestorm: {articles} negative saker om {unit} siste {minutes:g} min",
        "media",
    ),
    # Severity: the warning's awareness level or CAP severity, else this.
    EventKind(
        "warning.cap",
        CapWarningData,
        "extreme_weather",
        2,
        "Farevarsel: {headline} ({unit})",
        "cap",
    ),
)

# --- the registry -----------------------------------------------------------------------

_BY_TYPE: dict[str, EventKind] = {}  # full type name → kind
_BY_NAME: dict[str, EventKind] = {}  # short type name → kind
_BY_TOPIC: dict[str, EventKind] = {}  # a sensor's name or alias in topics → kind


def _problems(kind: EventKind) -> list[str]:
    out = []
    if kind.type in _BY_TYPE:
        out.append(f"event type {kind.name!r} is already declared")
    if kind.incident_type not in INCIDENT_TYPE_LABELS and kind.incident_type != STAFF_REPORT_TYPE:
        out.append(f"{kind.name}: unknown incident type {kind.incident_type!r}")
    if not 1 <= kind.severity <= 5:
        out.append(f"{kind.name}: severity {kind.severity} is not 1–5")
    if not kind.title.strip():
        out.append(f"{kind.name}: no title")
    if kind.aliases and kind.sensor is None:
        out.append(f"{kind.name}: only sensor types have topic aliases")
    names = [n for n in (kind.sensor, *kind.aliases) if n]
    for name in names:
        if name in _BY_TOPIC or names.count(name) > 1:
            out.append(f"{kind.name}: topic name {name!r} is taken")
    return out


def register(kind: EventKind) -> EventKind:
    """Declare one more event type (ValueError naming each broken invariant); returns it."""
    problems = _problems(kind)
    if problems:
        raise ValueError("; ".join(problems))
    _BY_TYPE[kind.type] = kind
    _BY_NAME[kind.name] = kind
    for name in (kind.sensor, *kind.aliases):
        if name:
            _BY_TOPIC[name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget an event type (full or short name), e.g. one a test registered."""
    kind = find(name)
    if kind is None:
        raise KeyError(name)
    del _BY_TYPE[kind.type], _BY_NAME[kind.name]
    for topic in [t for t, k in _BY_TOPIC.items() if k is kind]:
        del _BY_TOPIC[topic]


def find(event_type: str) -> EventKind | None:
    """The declaration of a full or short type name; None if none."""
    return _BY_NAME.get(event_type) or _BY_TYPE.get(event_type)


def kinds() -> tuple[EventKind, ...]:
    """Every declared event type, in declaration order."""
    return tuple(_BY_TYPE.values())


def for_topic(sensor_kind: str) -> EventKind | None:
    """The sensor type a topic's sensor kind names (its own name or an alias); None if none."""
    return _BY_TOPIC.get(sensor_kind)


def topic_names() -> list[str]:
    """Every sensor kind a topic may name, sorted."""
    return sorted(_BY_TOPIC)


def incident_type_for(event_type: str, data: Mapping[str, Any] | None = None) -> str | None:
    """The incident type an event signals (full or short event type); None if unknown.

    A staff report's is its category's (:data:`REPORT_CATEGORIES`), None for an unknown one.
    """
    kind = find(event_type)
    if kind is None:
        return None
    if kind.incident_type == STAFF_REPORT_TYPE:
        category = str((data or {}).get("category", "")).strip().lower()
        return REPORT_CATEGORIES.get(category)
    return kind.incident_type


class _View(Mapping[str, Any]):
    """A read-only mapping over the registry, current after every :func:`register`."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __getitem__(self, event_type: str) -> Any:
        return getattr(_BY_TYPE[event_type], self._value)

    def __contains__(self, event_type: object) -> bool:
        return event_type in _BY_TYPE

    def __iter__(self) -> Iterator[str]:
        return iter(_BY_TYPE)

    def __len__(self) -> int:
        return len(_BY_TYPE)


#: Full type name → the model of its ``data`` (live: registered types included).
EVENT_TYPES: Final[Mapping[str, type[EventData]]] = _View("model")
#: Full type name → the incident type it signals (``staff_report``: refined by category).
INCIDENT_TYPES: Final[Mapping[str, str]] = _View("incident_type")

for _kind in CATALOGUE:
    register(_kind)
