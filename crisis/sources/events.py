"""The event envelope (CloudEvents 1.0, structured mode) and its validation.

One module is the single definition used by the HTTP ingest, the bridges and the stream
agents, so an event is judged the same wherever it enters. The types and the model of each
type's ``data`` are the catalogue's (:mod:`crisis.sources.catalogue`). Validation is strict:
unknown types, unknown fields and wrong values are rejected with ``{index, field, message}``.
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

from crisis.sources.catalogue import EVENT_TYPES, PREFIX

__all__ = ["EVENT_TYPES", "PREFIX", "Envelope", "EventError", "event_json_schema", "validate_event"]

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
