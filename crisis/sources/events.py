"""The event envelope (CloudEvents 1.0, JSON format) and its validation.

One module is the single definition used by the HTTP ingest, the bridges and the stream
agents, so an event is judged the same wherever it enters. The types and the model of each
type's ``data`` are the catalogue's (:mod:`crisis.sources.catalogue`). Validation is strict:
unknown types, unknown data fields and wrong values are rejected with ``{index, field,
message}``. Extension attributes (``traceparent``, ``knativearrivaltime``, …) are kept as
they came when their name and value are valid CloudEvents. ``data_base64`` carries non-JSON
data; when ``datacontenttype`` is JSON it is decoded into ``data``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from crisis.sources.catalogue import EVENT_TYPES, PREFIX

__all__ = [
    "EVENT_TYPES",
    "PREFIX",
    "Envelope",
    "EventError",
    "event_json_schema",
    "is_json_media_type",
    "validate_event",
]

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
    "data_base64",
}
#: The project's own extension attributes: declared fields of the envelope.
PROJECT_ATTRIBUTES = frozenset({"unit", "exercise"})
#: Longest string value of an extension attribute (a W3C ``tracestate`` is at most 512).
EXTENSION_MAX_CHARS = 2048
#: At most this many extension attributes per event.
MAX_EXTENSIONS = 32
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;.*)?$")
_JSON_MEDIA_TYPE = re.compile(r"^(application|text)/([A-Za-z0-9.-]+\+)?json(\s*;.*)?$", re.I)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$")
#: The W3C trace context extension (CloudEvents distributed tracing).
TRACE_ATTRIBUTES = ("traceparent", "tracestate")


def is_json_media_type(media_type: str | None) -> bool:
    """``application/json``, ``text/json`` or ``…+json``, with or without parameters."""
    return media_type is not None and bool(_JSON_MEDIA_TYPE.match(media_type.strip()))


def _extension_schema(schema: dict[str, Any]) -> None:
    """Extension attributes in the published schema: any valid one, the trace context's
    checked as the validator checks them."""
    schema["additionalProperties"] = {
        "description": "an extension attribute (name: a-z0-9, at most 20)",
        "type": ["string", "integer", "boolean"],
        "maxLength": EXTENSION_MAX_CHARS,
    }
    properties = schema.setdefault("properties", {})
    properties["traceparent"] = {
        "type": "string",
        "pattern": _TRACEPARENT.pattern,
        "description": "W3C trace context; carried into the log entries the event causes",
    }
    properties["tracestate"] = {"type": "string", "maxLength": EXTENSION_MAX_CHARS}


class Envelope(BaseModel):
    """A CloudEvents 1.0 event with the project's extension attributes (``unit``,
    ``exercise``); any other extension attribute is kept as an extra field."""

    model_config = ConfigDict(
        extra="allow",
        str_strip_whitespace=True,
        json_schema_extra=lambda schema: _extension_schema(schema),
    )

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=200)
    time: datetime | None = None
    subject: str | None = Field(default=None, max_length=200)
    datacontenttype: str | None = Field(default=None, max_length=200)
    dataschema: str | None = Field(default=None, max_length=500)
    unit: str | None = Field(default=None, max_length=80)
    exercise: str | None = Field(default=None, min_length=1, max_length=120)
    data: dict[str, Any] = Field(default_factory=dict)
    data_base64: str | None = Field(
        default=None,
        description="non-JSON data, base64 (RFC 4648); with a JSON datacontenttype it is "
        "decoded into data",
    )

    @field_validator("datacontenttype")
    @classmethod
    def _media_type(cls, value: str | None) -> str | None:
        if value is not None and not _MEDIA_TYPE.match(value):
            raise ValueError("not a media type (RFC 2046), e.g. application/json")
        return value

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

    @model_serializer(mode="wrap")
    def _one_data_member(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # data_base64 and data are exclusive (JSON format 3.1): the placeholder {} goes
        out: dict[str, Any] = handler(self)
        if out.get("data_base64") is not None:
            out.pop("data", None)
        return out

    @property
    def extensions(self) -> dict[str, Any]:
        """The extension attributes other than the project's own, as they came."""
        return dict(self.model_extra or {})

    @property
    def trace(self) -> dict[str, str]:
        """The W3C trace context (``traceparent``, ``tracestate``) when the event has one."""
        extra = self.model_extra or {}
        return {k: str(extra[k]) for k in TRACE_ATTRIBUTES if extra.get(k) is not None}

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


def _extension_errors(raw: dict[str, Any], index: int | None) -> list[dict[str, Any]]:
    """Each extension attribute with a bad name or value, named."""

    def err(field: str, message: str) -> dict[str, Any]:
        return {"index": index, "field": field, "message": message}

    names = sorted(set(raw) - _CORE - PROJECT_ATTRIBUTES)
    errors = [
        err(str(name), "not a CloudEvents attribute name (lowercase a-z0-9, max 20)")
        for name in names
        if not _EXTENSION_NAME.match(str(name))
    ]
    if len(names) > MAX_EXTENSIONS:
        errors.append(err("event", f"{len(names)} extension attributes; at most {MAX_EXTENSIONS}"))
    for name in names:
        value = raw[name]
        if isinstance(value, float) or not isinstance(value, str | int | bool):
            errors.append(err(name, "an extension attribute is a string, integer or boolean"))
        elif isinstance(value, str) and len(value) > EXTENSION_MAX_CHARS:
            errors.append(err(name, f"longer than {EXTENSION_MAX_CHARS} characters"))
    traceparent = raw.get("traceparent")
    if isinstance(traceparent, str) and not _TRACEPARENT.match(traceparent):
        errors.append(
            err("traceparent", "not a W3C traceparent (version-traceid-parentid-flags, hex)")
        )
    return errors


def _data_from_base64(raw: dict[str, Any], index: int | None) -> dict[str, Any]:
    """Check ``data_base64``; with a JSON ``datacontenttype`` its JSON becomes ``data``."""
    encoded = raw.get("data_base64")
    if encoded is None:
        return raw

    def fail(field: str, message: str) -> EventError:
        return EventError([{"index": index, "field": field, "message": message}])

    if "data" in raw:
        raise fail("data_base64", "send either data or data_base64, not both")
    if not isinstance(encoded, str):
        raise fail("data_base64", "base64 text (RFC 4648) expected")
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise fail("data_base64", "not valid base64 (RFC 4648)") from None
    content_type = raw.get("datacontenttype")
    if not isinstance(content_type, str) or not is_json_media_type(content_type):
        return raw
    try:
        data = json.loads(decoded)
    except ValueError:
        raise fail("data_base64", f"the decoded data is not JSON ({content_type})") from None
    return {k: v for k, v in raw.items() if k != "data_base64"} | {"data": data}


def validate_event(
    raw: Any, *, index: int | None = None, known_units: set[str] | None = None
) -> Envelope:
    """Parse one event (envelope and its type's data) or raise EventError naming each problem."""
    if not isinstance(raw, dict):
        raise EventError(
            [{"index": index, "field": "event", "message": "an event is a JSON object"}]
        )
    # JSON format 3.1: an attribute whose value is null is absent
    raw = {k: v for k, v in raw.items() if v is not None or k in _CORE | PROJECT_ATTRIBUTES}
    extension_errors = _extension_errors(raw, index)
    if extension_errors:
        raise EventError(extension_errors)
    raw = _data_from_base64(raw, index)
    content_type = raw.get("datacontenttype")
    if "data" in raw and isinstance(content_type, str) and not is_json_media_type(content_type):
        raise EventError(
            [
                {
                    "index": index,
                    "field": "datacontenttype",
                    "message": f"data of type {content_type} goes in data_base64; data holds JSON",
                }
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
