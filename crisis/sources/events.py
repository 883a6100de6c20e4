"""The event envelope (CloudEvents 1.0, structured mode) and the data of every event type.

One module is the single definition used by the HTTP ingest, the bridges and the stream
agents, so an event is judged the same wherever it enters. Validation is strict: unknown
types, unknown fields and wrong values are rejected with ``{index, field, message}``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

PREFIX = "no.kriminalomsorgen."

SENSOR_TYPES = (
    "breath_absent",
    "motion_absent",
    "personal_alarm",
    "fire_alarm",
    "perimeter_breach",
    "door_forced",
    "ek_tamper",
    "ek_zone_violation",
    "ek_signal_lost",
    "reverse_violence_alarm",
    "heartbeat",
)


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CellSensorData(_Data):
    """Breath or motion sensor in a cell: no breathing / no motion for a while."""

    cell: str = Field(min_length=1, max_length=40)
    department: str | None = Field(default=None, max_length=80)
    seconds_without_breath: int | None = Field(default=None, ge=0)
    seconds_without_motion: int | None = Field(default=None, ge=0)


class PersonalAlarmData(_Data):
    staff_id: str | None = Field(default=None, max_length=80)
    area: str | None = Field(default=None, max_length=80)
    department: str | None = Field(default=None, max_length=80)
    location: str | None = Field(default=None, max_length=200)


class ZoneData(_Data):
    """Fire alarm, perimeter breach, forced door: a zone, area or door of the unit."""

    zone: str | None = Field(default=None, max_length=80)
    area: str | None = Field(default=None, max_length=80)
    door: str | None = Field(default=None, max_length=80)
    department: str | None = Field(default=None, max_length=80)
    detail: str | None = Field(default=None, max_length=500)


class AnkleTagData(_Data):
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


class HeartbeatData(_Data):
    gateway: str = Field(min_length=1, max_length=120)
    interval_seconds: int = Field(default=60, ge=1, le=3600)


class IncidentReportData(_Data):
    """A staff report: anyone may report (alle har ansvar)."""

    category: str = Field(min_length=1, max_length=80)
    place: str = Field(min_length=1, max_length=200)
    what: str = Field(min_length=1, max_length=10_000)
    affected: str | None = Field(default=None, max_length=2_000)
    reporter: str | None = Field(default=None, max_length=120)
    severity: int | None = Field(default=None, ge=1, le=5)


class MediaArticleData(_Data):
    url: str = Field(min_length=1, max_length=2_000)
    title: str = Field(min_length=1, max_length=500)
    outlet: str | None = Field(default=None, max_length=200)
    published: datetime | None = None
    summary: str | None = Field(default=None, max_length=10_000)
    sentiment: Literal["positive", "neutral", "negative"] = "neutral"
    key_media: bool = False
    mentions_units: list[str] = Field(default_factory=list)
    mentions_incidents: list[str] = Field(default_factory=list)


class CapWarningData(_Data):
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


#: Full type name → the model of its ``data``.
EVENT_TYPES: dict[str, type[_Data]] = {
    PREFIX + "sensor.breath_absent": CellSensorData,
    PREFIX + "sensor.motion_absent": CellSensorData,
    PREFIX + "sensor.personal_alarm": PersonalAlarmData,
    PREFIX + "sensor.fire_alarm": ZoneData,
    PREFIX + "sensor.perimeter_breach": ZoneData,
    PREFIX + "sensor.door_forced": ZoneData,
    PREFIX + "sensor.ek_tamper": AnkleTagData,
    PREFIX + "sensor.ek_zone_violation": AnkleTagData,
    PREFIX + "sensor.ek_signal_lost": AnkleTagData,
    PREFIX + "sensor.reverse_violence_alarm": ReverseViolenceData,
    PREFIX + "sensor.heartbeat": HeartbeatData,
    PREFIX + "report.incident": IncidentReportData,
    PREFIX + "media.article": MediaArticleData,
    PREFIX + "warning.cap": CapWarningData,
}

_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_CORE = {
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataschema",
    "data",
}


class Envelope(BaseModel):
    """A CloudEvents 1.0 structured-mode event with the project's extension attributes."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=200)
    time: datetime | None = None
    subject: str | None = Field(default=None, max_length=200)
    datacontenttype: Literal["application/json"] | None = None
    dataschema: str | None = Field(default=None, max_length=500)
    unit: str | None = Field(default=None, max_length=80)
    exercise: str | None = Field(default=None, min_length=1, max_length=120)
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise ValueError(
                f"unknown event type {value!r}; known: {', '.join(sorted(EVENT_TYPES))}"
            )
        return value

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("time needs a UTC offset (RFC 3339), e.g. 2026-11-22T02:41:07Z")
        return value

    @model_validator(mode="after")
    def _unit_from_subject(self) -> Envelope:
        if self.unit is None and self.subject:
            self.unit = self.subject
        return self

    @property
    def key(self) -> tuple[str, str]:
        """(source, id): the same pair twice is one event."""
        return (self.source, self.id)

    @property
    def short_type(self) -> str:
        """'sensor.breath_absent' for 'no.kriminalomsorgen.sensor.breath_absent'."""
        return self.type.removeprefix(PREFIX)


class EventError(ValueError):
    """Invalid events; ``errors`` is the contract's list of ``{index, field, message}``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def _errors_from(
    exc: ValidationError, index: int | None, prefix: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [*prefix, *(str(p) for p in err.get("loc", ()))]
        message = err.get("msg", "invalid")
        out.append({"index": index, "field": ".".join(loc) or "event", "message": message})
    return out


def validate_event(
    raw: Any, *, index: int | None = None, known_units: set[str] | None = None
) -> Envelope:
    """Parse one event (envelope and its type's data) or raise EventError naming each problem."""
    if not isinstance(raw, dict):
        raise EventError(
            [{"index": index, "field": "event", "message": "an event is a JSON object"}]
        )
    extensions = set(raw) - _CORE - {"unit", "exercise"}
    bad = [name for name in extensions if not _EXTENSION_NAME.match(name)]
    if bad:
        raise EventError(
            [
                {
                    "index": index,
                    "field": name,
                    "message": "not a CloudEvents attribute name (lowercase a-z0-9, max 20)",
                }
                for name in sorted(bad)
            ]
        )
    if extensions:
        raise EventError(
            [
                {"index": index, "field": name, "message": "unknown attribute"}
                for name in sorted(extensions)
            ]
        )
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise EventError(_errors_from(exc, index)) from None
    try:
        data = EVENT_TYPES[envelope.type].model_validate(envelope.data)
    except ValidationError as exc:
        raise EventError(_errors_from(exc, index, ("data",))) from None
    envelope.data = data.model_dump(mode="json", exclude_none=True)
    if known_units is not None:
        if envelope.unit is None:
            raise EventError(
                [
                    {
                        "index": index,
                        "field": "unit",
                        "message": "the unit (or subject) naming the unit id is required",
                    }
                ]
            )
        if envelope.unit not in known_units:
            raise EventError(
                [
                    {
                        "index": index,
                        "field": "unit",
                        "message": f"unknown unit {envelope.unit!r} (see GET /api/v1/units)",
                    }
                ]
            )
    return envelope


def event_json_schema() -> dict[str, Any]:
    """The published JSON Schema: the envelope, with ``data`` chosen by ``type``."""
    envelope = Envelope.model_json_schema()
    branches = []
    defs: dict[str, Any] = dict(envelope.pop("$defs", {}))
    for name, model in EVENT_TYPES.items():
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs.setdefault(model.__name__, schema)
        branches.append(
            {
                "if": {"properties": {"type": {"const": name}}},
                "then": {"properties": {"data": {"$ref": f"#/$defs/{model.__name__}"}}},
            }
        )
    envelope["properties"]["type"] = {"enum": sorted(EVENT_TYPES)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kriminalomsorgen.no/schemas/crisis-event.json",
        **envelope,
        "allOf": branches,
        "$defs": defs,
    }
