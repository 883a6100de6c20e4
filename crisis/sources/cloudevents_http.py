"""Receiving CloudEvents over HTTP (the CloudEvents 1.0 HTTP protocol binding): a request's
Content-Type, headers and body → the raw events it carries, each in JSON-format form.

Three content modes, chosen as the binding says:

- **batch**: ``application/cloudevents-batch+json``, a JSON array of events;
- **structured**: ``application/cloudevents+json``, one event (a JSON array is read as a batch,
  as it always was); plain ``application/json`` without ``ce-*`` headers is read the same way;
- **binary**: any other request with ``ce-*`` headers. Each ``ce-NAME`` header is the attribute
  ``NAME`` (lower-cased, percent-decoded, binding 3.1.3.2); the body is the data and the
  Content-Type header its ``datacontenttype``. A JSON body becomes ``data``; any other body
  ``data_base64``. Without a Content-Type the body is read as JSON (the JSON format's default
  for an absent ``datacontenttype``), and a body that is not JSON is refused (415 naming
  ``datacontenttype``) rather than guessed at.

Validation of the events themselves is :func:`crisis.sources.events.validate_event`'s.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote

from crisis.sources import jsonlimits
from crisis.sources.events import is_json_media_type

__all__ = [
    "BATCH_TYPE",
    "CE_PREFIX",
    "STRUCTURED_TYPE",
    "BindingError",
    "Mode",
    "Received",
    "read_request",
]

STRUCTURED_TYPE: Final = "application/cloudevents+json"
BATCH_TYPE: Final = "application/cloudevents-batch+json"
#: Media types read as JSON events (structured or batch) when no ``ce-*`` header is sent.
JSON_EVENT_TYPES: Final = ("application/json", STRUCTURED_TYPE, BATCH_TYPE)
CE_PREFIX: Final = "ce-"
#: Attributes that are never headers in binary mode: the data is the body, its type the
#: Content-Type header.
_NOT_HEADERS: Final = {
    "data": "in binary mode the data is the body",
    "data_base64": "in binary mode the data is the body",
    "datacontenttype": "in binary mode the data's type is the Content-Type header",
}

Mode = Literal["structured", "batch", "binary"]


class BindingError(ValueError):
    """A request the binding cannot read: ``status`` and the contract's error list."""

    def __init__(self, status: int, field: str, message: str, index: int | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.errors = [{"index": index, "field": field, "message": message}]


@dataclass(frozen=True)
class Received:
    mode: Mode
    events: list[Any]


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type value, lower-cased, without its parameters."""
    return (content_type or "").split(";")[0].strip().lower()


def _json(body: bytes, field: str = "body") -> Any:
    try:
        return jsonlimits.loads(body)
    except jsonlimits.JsonLimitError as exc:
        raise BindingError(422, field, str(exc)) from None
    except ValueError as exc:
        raise BindingError(400, field, f"not valid JSON: {exc}") from None


def read_request(
    content_type: str | None,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    max_data_bytes: int,
) -> Received:
    """The events of one request. ``headers`` are (name, value) pairs, every one of them (a
    repeated ``ce-*`` header is refused); ``max_data_bytes`` bounds binary data once encoded
    as ``data_base64``."""
    kind = media_type(content_type)
    ce_headers = [(n.lower(), v) for n, v in headers if n.lower().startswith(CE_PREFIX)]
    if kind.startswith("application/cloudevents"):
        if kind not in (STRUCTURED_TYPE, BATCH_TYPE):
            raise BindingError(
                415,
                "content-type",
                f"{kind}: only the JSON event format is read ({STRUCTURED_TYPE}, {BATCH_TYPE})",
            )
        return _structured(kind, body)
    if ce_headers:
        return Received("binary", [_binary(content_type, ce_headers, body, max_data_bytes)])
    if kind == "application/json":
        return _structured(kind, body)
    raise BindingError(
        415,
        "content-type",
        f"send CloudEvents: structured ({STRUCTURED_TYPE} or application/json), "
        f"batch ({BATCH_TYPE}) or binary (ce-* headers, the data as the body)",
    )


def _structured(kind: str, body: bytes) -> Received:
    parsed = _json(body)
    if kind == BATCH_TYPE:
        if not isinstance(parsed, list):
            raise BindingError(422, "body", f"{BATCH_TYPE} is a JSON array of events")
        return Received("batch", parsed)
    if isinstance(parsed, list):  # an array as application/(cloudevents+)json: read as a batch
        return Received("batch", parsed)
    return Received("structured", [parsed])


def _binary(
    content_type: str | None,
    ce_headers: list[tuple[str, str]],
    body: bytes,
    max_data_bytes: int,
) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for header, value in ce_headers:
        name = header.removeprefix(CE_PREFIX)
        if name in _NOT_HEADERS:
            raise BindingError(400, name, f"{header}: {_NOT_HEADERS[name]}", 0)
        if name in event:
            raise BindingError(400, name, f"{header} is sent more than once", 0)
        try:
            event[name] = unquote(value.strip(), errors="strict")
        except UnicodeDecodeError:
            raise BindingError(
                400, name, f"{header}: percent-encoding is not UTF-8 (binding 3.1.3.2)", 0
            ) from None
    if not body:
        if content_type:
            event["datacontenttype"] = content_type.strip()
        return event
    if content_type is None or not content_type.strip():
        try:
            event["data"] = jsonlimits.loads(body)
        except jsonlimits.JsonLimitError as exc:
            raise BindingError(422, "data", str(exc), 0) from None
        except ValueError:
            raise BindingError(
                415,
                "datacontenttype",
                "no Content-Type and the body is not JSON: send the data's media type "
                "as the Content-Type header",
                0,
            ) from None
        return event
    event["datacontenttype"] = content_type.strip()
    if is_json_media_type(content_type):
        try:
            event["data"] = jsonlimits.loads(body)
        except jsonlimits.JsonLimitError as exc:
            raise BindingError(422, "data", str(exc), 0) from None
        except ValueError as exc:
            raise BindingError(400, "data", f"the body is not valid JSON: {exc}", 0) from None
        return event
    encoded = base64.b64encode(body).decode("ascii")
    if len(encoded) > max_data_bytes:
        raise BindingError(
            413,
            "data_base64",
            f"the data is {len(encoded)} bytes as base64; the limit is {max_data_bytes} "
            "(CRISIS_INGEST_MAX_BODY_BYTES)",
            0,
        )
    event["data_base64"] = encoded
    return event
