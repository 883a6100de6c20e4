"""The OpenAPI document as a client generator needs it (issue 20).

The ingest routes read their raw body (a request is accepted whole or not at all), so FastAPI
sees no body parameter; their request bodies, 202 answers and error answers are declared here
(``openapi_extra``/``responses`` on the routes) and the shared schemas added by
:func:`install`: the event JSON Schema (``CloudEvent``, also served at
``GET /api/v1/schemas/event``), the report form, the one error shape (``Errors``) in place of
FastAPI's ``HTTPValidationError`` (``web.errors`` answers every 422 in that shape). The
bearer and session-cookie security schemes come from ``web.deps.get_current_user``, so every
route that needs a login declares them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from crisis.sources import reports
from crisis.sources.catalogue import IncidentReportData
from crisis.sources.cloudevents_http import BATCH_TYPE, STRUCTURED_TYPE
from crisis.sources.events import event_json_schema
from web.deps import CurrentUser

router = APIRouter(prefix="/api/v1", tags=["schemas"])

SCHEMAS: Final = "#/components/schemas/"
#: Component names of the event schema's own definitions get this prefix (no clash with
#: the API's models).
EVENT_DEFS_PREFIX: Final = "CloudEvent_"
CAP_MEDIA_TYPES: Final = ("application/cap+xml", "application/xml", "text/xml")

_MESSAGES: Final = {
    400: "Malformed: not JSON, not XML, a header the binding cannot read",
    401: "No valid bearer token or session",
    403: "The role or the unit is outside what the user may send",
    411: "A form without a Content-Length",
    413: "Too large: the body, the batch or one source's burst",
    415: "A media type this endpoint does not read",
    422: "Invalid: each problem with the event's index and the field",
    429: "Too many events from one source; see Retry-After",
    503: "Ingest not configured or the outbox unusable; nothing accepted",
    507: "The disk is full; nothing accepted; see Retry-After",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMAS + name}


def answers(*statuses: int, accepted: str = "events") -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of an ingest route: its 202 and its refusals in the error shape."""
    out: dict[int | str, dict[str, Any]] = {
        202: {
            "description": "Accepted: every event is durable",
            "content": {"application/json": {"schema": _ref(_ACCEPTED_NAMES[accepted])}},
        }
    }
    for status in statuses:
        out[status] = {
            "description": _MESSAGES[status],
            "content": {"application/json": {"schema": _ref("Errors")}},
        }
    return out


def events_operation() -> dict[str, Any]:
    event = _ref("CloudEvent")
    batch = {"type": "array", "items": event, "minItems": 1}
    return {
        "requestBody": {
            "required": True,
            "description": (
                "CloudEvents 1.0 over the HTTP binding. Structured mode: one event as "
                f"{STRUCTURED_TYPE} or application/json. Batch mode: a JSON array as "
                f"{BATCH_TYPE} (or application/json). Binary mode: the attributes as ce-* "
                "headers (ce-specversion, ce-id, ce-source, ce-type, ce-unit, ce-traceparent, "
                "…; percent-encoded), the data as the body and its media type as Content-Type "
                "(JSON → data, anything else → data_base64; no Content-Type: the body must be "
                "JSON). The schema of every event: GET /api/v1/schemas/event."
            ),
            "content": {
                STRUCTURED_TYPE: {"schema": event},
                "application/json": {"schema": {"anyOf": [event, batch]}},
                BATCH_TYPE: {"schema": batch},
            },
        }
    }


def reports_operation() -> dict[str, Any]:
    form = _ref("ReportForm")
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": form},
                "application/x-www-form-urlencoded": {"schema": form},
                "multipart/form-data": {"schema": form},
            },
        }
    }


def cap_operation() -> dict[str, Any]:
    xml = {
        "type": "string",
        "description": "an OASIS CAP 1.2 <alert> document (MET Norway's profile is read)",
    }
    return {
        "requestBody": {
            "required": True,
            "content": {media: {"schema": xml} for media in CAP_MEDIA_TYPES},
        }
    }


def _error_schemas() -> dict[str, Any]:
    return {
        "ErrorItem": {
            "type": "object",
            "required": ["index", "field", "message"],
            "properties": {
                "index": {
                    "type": ["integer", "null"],
                    "description": "the event's place in the request (null: the request)",
                },
                "field": {"type": "string", "description": "the field or header at fault"},
                "message": {"type": "string"},
            },
        },
        "Errors": {
            "type": "object",
            "required": ["errors"],
            "properties": {
                "errors": {"type": "array", "items": _ref("ErrorItem")},
                "detail": {"type": "string", "description": "the first message, as text"},
            },
        },
    }


_IDS: Final = {"type": "array", "items": {"type": "string"}}
_ACCEPTED_NAMES: Final = {
    "events": "EventsAccepted",
    "report": "ReportAccepted",
    "cap": "CapAccepted",
}


def _accepted_schemas() -> dict[str, Any]:
    return {
        "EventsAccepted": {
            "type": "object",
            "required": ["accepted"],
            "properties": {"accepted": {**_IDS, "description": "the ids of the events"}},
        },
        "ReportAccepted": {
            "type": "object",
            "required": ["accepted", "id"],
            "properties": {"accepted": _IDS, "id": {"type": "string"}},
        },
        "CapAccepted": {
            "type": "object",
            "required": ["accepted", "identifier", "units"],
            "properties": {
                "accepted": {**_IDS, "description": "one warning event per unit reached"},
                "identifier": {"type": "string"},
                "units": _IDS,
                "note": {
                    "type": "string",
                    "description": "why nothing was produced (Test, Draft, no unit reached)",
                },
                "warnings": {
                    "type": "array",
                    "items": _ref("ErrorItem"),
                    "description": "geocodes no unit could be matched by (EMMA_ID, …)",
                },
            },
        },
    }


def report_form_schema() -> dict[str, Any]:
    """The report's fields (``IncidentReportData`` less ``reporter``) and its envelope's."""
    data = IncidentReportData.model_json_schema()
    properties = {k: v for k, v in data["properties"].items() if k in reports.REPORT_DATA}
    properties |= {
        "unit": {"type": "string", "description": "the unit's id (default: the user's unit)"},
        "exercise": {"type": "string", "description": "exercise id (exercise events only)"},
        "time": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "description": "an id of your own (default: a UUID)"},
    }
    return {
        "type": "object",
        "description": "A staff incident report (JSON or a form)",
        "required": [k for k in data.get("required", []) if k in properties],
        "properties": properties,
        "additionalProperties": False,
    }


def event_schema_components() -> dict[str, Any]:
    """``event_json_schema()`` as OpenAPI components: ``CloudEvent`` and its definitions,
    the references rewritten to point at them."""
    published = event_json_schema()
    text = json.dumps(published).replace('"#/$defs/', f'"{SCHEMAS}{EVENT_DEFS_PREFIX}')
    schema: dict[str, Any] = json.loads(text)
    defs = schema.pop("$defs", {})
    for key in ("$schema", "$id"):  # an $id would re-base the references
        schema.pop(key, None)
    out = {EVENT_DEFS_PREFIX + name: value for name, value in defs.items()}
    out["CloudEvent"] = schema
    return out


def _use_error_shape(schema: dict[str, Any]) -> None:
    """Every 422 FastAPI describes as ``HTTPValidationError`` is answered as ``Errors``."""
    fastapi_shape = SCHEMAS + "HTTPValidationError"
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            for media in answer.get("content", {}).values():
                if media.get("schema", {}).get("$ref") == fastapi_shape:
                    media["schema"] = _ref("Errors")
    components = schema.get("components", {}).get("schemas", {})
    if fastapi_shape not in json.dumps(schema):
        components.pop("HTTPValidationError", None)
        if SCHEMAS + "ValidationError" not in json.dumps(schema):
            components.pop("ValidationError", None)


def install(app: FastAPI) -> None:
    """Complete ``app.openapi()`` with the shared schemas and the security schemes."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas |= _error_schemas() | _accepted_schemas() | event_schema_components()
        schemas["ReportForm"] = report_form_schema()
        _use_error_shape(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


@router.get(
    "/schemas/event",
    summary="The event JSON Schema (CloudEvents 1.0 JSON format)",
    responses={
        200: {
            "description": "JSON Schema draft 2020-12",
            "content": {"application/schema+json": {"schema": {"type": "object"}}},
        },
        401: {
            "description": _MESSAGES[401],
            "content": {"application/json": {"schema": _ref("Errors")}},
        },
    },
)
async def event_schema(_user: CurrentUser) -> JSONResponse:
    """The JSON Schema (draft 2020-12) every event is checked against, ``data`` by ``type``
    (the same as ``components.schemas.CloudEvent`` of /openapi.json)."""
    return JSONResponse(event_json_schema(), media_type="application/schema+json")
