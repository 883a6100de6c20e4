"""Ingest: CloudEvents, CAP 1.2 warnings and staff reports → durable events (202).

Thin views over ``crisis.events`` (validation), ``crisis.cap`` (CAP rules and geometry),
``crisis.ratelimit`` (per-source token buckets) and ``crisis.producer`` (Kafka or the outbox).
Every refusal uses the one error shape; a request is accepted whole or not at all. A CAP
alert is read against ``CRISIS_CAP_MAX_BODY_BYTES`` and parsed and matched in a worker thread
(at most :data:`CAP_PARSERS` at once) within ``CRISIS_CAP_MAX_*``, so the event loop serves
other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel import col, select

from crisis.accounts.models import User
from crisis.domain.permissions import Action, allowed
from crisis.domain.vocabulary import Role
from crisis.kafka.producer import EventProducer
from crisis.log.models import RawEvent
from crisis.sources import cap, cloudevents_http, jsonlimits, reports
from crisis.sources.cloudevents_http import CE_PREFIX
from crisis.sources.events import EVENT_TYPES, PREFIX, Envelope, EventError, validate_event
from crisis.sources.ratelimit import TokenBuckets
from crisis.store.errors import is_disk_full
from web.api import openapi
from web.api.metrics import WebMetrics
from web.deps import CurrentUser, Org, SessionDep, read_body, scope_of

router = APIRouter(prefix="/api/v1", tags=["ingest"])

JSON_TYPES = (
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
)
CAP_TYPES = ("application/cap+xml", "application/xml", "text/xml")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
REPORT_TYPE = reports.REPORT_TYPE


class Refusal(Exception):
    """An answer other than 202: status, errors, optional headers."""

    def __init__(
        self,
        status: int,
        errors: list[dict[str, Any]],
        *,
        headers: dict[str, str] | None = None,
        reason: str = "invalid",
    ) -> None:
        super().__init__(errors[0]["message"] if errors else str(status))
        self.status = status
        self.errors = errors
        self.headers = headers or {}
        self.reason = reason

    def response(self) -> JSONResponse:
        return JSONResponse({"errors": self.errors}, status_code=self.status, headers=self.headers)


def _err(field: str, message: str, index: int | None = None) -> list[dict[str, Any]]:
    return [{"index": index, "field": field, "message": message}]


def _metrics(request: Request) -> WebMetrics:
    metrics: WebMetrics = request.app.state.metrics
    return metrics


def _type_label(raw: Any) -> str:
    """A bounded label: the short type when known, else 'unknown'."""
    if isinstance(raw, dict) and isinstance(raw.get("type"), str):
        if raw["type"] in EVENT_TYPES:
            return str(raw["type"]).removeprefix(PREFIX)
    return "unknown"


def _producer(request: Request) -> EventProducer:
    producer: EventProducer | None = getattr(request.app.state, "producer", None)
    if producer is None:
        raise Refusal(
            503,
            _err(
                "kafka",
                "mottak er ikke konfigurert / ingest is not configured: "
                "set CRISIS_KAFKA_BOOTSTRAP (crisis up does this)",
            ),
            reason="unavailable",
        )
    return producer


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _body(
    request: Request, limit: int | None = None, setting: str = "CRISIS_INGEST_MAX_BODY_BYTES"
) -> bytes:
    """The body, read no further than ``limit`` (ingest's by default): 413 past it."""
    if limit is None:
        limit = request.app.state.settings.ingest_max_body_bytes
    declared = request.headers.get("content-length", "")
    too_big = Refusal(
        413,
        _err("body", f"the body is larger than the limit of {limit} bytes ({setting})"),
        reason="too_large",
    )
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = await read_body(request, limit)
    if body is None:
        raise too_big
    return body


def _json(body: bytes) -> Any:
    """The parsed body: 422 past the JSON depth limit (never a RecursionError), 400 if not JSON."""
    try:
        return jsonlimits.loads(body)
    except jsonlimits.JsonLimitError as exc:
        raise Refusal(422, _err("body", str(exc))) from None
    except ValueError as exc:
        raise Refusal(400, _err("body", f"not valid JSON: {exc}"), reason="bad_request") from None


def _require(user: User, action: Action) -> None:
    """The permission table (crisis.permissions) in ingest's own refusal shape."""
    if not allowed(user.role, action):
        message = f"rollen {user.role} har ikke tilgang til {action} / the role may not {action}"
        raise Refusal(403, _err("role", message), reason="forbidden")


def _check_scope(user: User, org: Any, envelopes: Sequence[Envelope]) -> None:
    """Operators and regions post for their own units; exercise controllers only exercises."""
    scope = scope_of(user, org)
    errors = []
    for i, env in enumerate(envelopes):
        if env.exercise is not None and not allowed(user.role, Action.EXERCISE):
            errors += _err("exercise", f"rollen {user.role} kan ikke øve / may not exercise", i)
        elif scope.exercises_only and env.exercise is None:
            errors += _err("exercise", "rollen kan bare sende øvelseshendelser / exercise only", i)
        elif not scope.exercises_only and not scope.all_units and env.unit not in scope.units:
            errors += _err(
                "unit", f"utenfor ditt ansvarsområde / unit {env.unit!r} out of scope", i
            )
    if errors:
        raise Refusal(403, errors, reason="forbidden")


def _rate_limit(request: Request, envelopes: Iterable[Envelope]) -> None:
    buckets: TokenBuckets = request.app.state.rate_limiter
    demand = Counter(env.source for env in envelopes)
    wait = buckets.take(demand)
    if wait == 0:
        return
    if math.isinf(wait):
        raise Refusal(
            413,
            _err(
                "source",
                f"more than {buckets.burst} events from one source in one request "
                "(CRISIS_INGEST_BURST_PER_SOURCE)",
            ),
            reason="too_large",
        )
    raise Refusal(
        429,
        _err(
            "source",
            f"for mange hendelser / too many events from this source: limit "
            f"{buckets.rate:g}/s, burst {buckets.burst}; retry after {math.ceil(wait)} s",
        ),
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
        reason="rate_limited",
    )


#: Seconds a 507 (full disk) or 503 (outbox unusable) asks the client to wait.
STORAGE_RETRY_AFTER = 30
#: Seconds one reading of the data directory's free space is reused.
FREE_SPACE_TTL = 1.0
_free_space: dict[str, tuple[float, int]] = {}


def _free_bytes(path: Path) -> int | None:
    """Free bytes on ``path``'s file system, read at most once per ``FREE_SPACE_TTL``;
    None when it cannot be read (the durable write then decides)."""
    key = str(path)
    now = time.monotonic()
    cached = _free_space.get(key)
    if cached is not None and now - cached[0] < FREE_SPACE_TTL:
        return cached[1]
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return None
    _free_space[key] = (now, free)
    return free


def _insufficient_storage(message: str) -> Refusal:
    return Refusal(
        507,
        _err("storage", f"disken er full / {message}; nothing accepted"),
        headers={"Retry-After": str(STORAGE_RETRY_AFTER)},
        reason="insufficient_storage",
    )


def _check_free_space(request: Request) -> None:
    """Refuse up front (507) what could not be kept: the data directory (the outbox's disk)
    has less than ``ingest_min_free_bytes`` free."""
    settings = request.app.state.settings
    minimum: int = settings.ingest_min_free_bytes
    if minimum <= 0:
        return
    free = _free_bytes(settings.data_dir)
    if free is not None and free < minimum:
        raise _insufficient_storage(
            f"the data directory has {free} bytes free, less than the "
            f"{minimum} required (CRISIS_INGEST_MIN_FREE_BYTES)"
        )


async def _accept(request: Request, envelopes: list[Envelope]) -> list[str]:
    producer = _producer(request)
    _check_free_space(request)
    try:
        ids = await producer.accept(envelopes)
    except Exception as exc:  # the outbox itself failed: say so, accept nothing
        if is_disk_full(exc):
            _free_space.pop(str(request.app.state.settings.data_dir), None)
            raise _insufficient_storage(
                f"the disk is full, the events could not be stored durably: {exc}"
            ) from exc
        raise Refusal(
            503,
            _err("outbox", f"could not store the events durably, nothing accepted: {exc}"),
            headers={"Retry-After": str(STORAGE_RETRY_AFTER)},
            reason="unavailable",
        ) from exc
    metrics = _metrics(request)
    for env in envelopes:
        metrics.events_accepted.labels(type=env.short_type).inc()
    return ids


def _refused(request: Request, refusal: Refusal, raws: Sequence[Any] = ()) -> JSONResponse:
    metrics = _metrics(request)
    for raw in raws or [None]:
        metrics.events_rejected.labels(type=_type_label(raw), reason=refusal.reason).inc()
    return refusal.response()


def _dedupe(envelopes: list[Envelope]) -> list[Envelope]:
    seen: set[tuple[str, str]] = set()
    out = []
    for env in envelopes:
        if env.key not in seen:
            seen.add(env.key)
            out.append(env)
    return out


def _validate_all(raws: Sequence[Any], org: Any) -> list[Envelope]:
    known = set(org.units)
    envelopes, errors = [], []
    for i, raw in enumerate(raws):
        try:
            envelopes.append(validate_event(raw, index=i, known_units=known))
        except EventError as exc:
            errors += exc.errors
    if errors:
        raise Refusal(422, errors)
    return envelopes


# --- CloudEvents --------------------------------------------------------------------------


@router.post(
    "/events",
    status_code=202,
    openapi_extra=openapi.events_operation(),
    responses=openapi.answers(400, 401, 403, 413, 415, 422, 429, 503, 507),
)
async def post_events(request: Request, user: CurrentUser, org: Org) -> JSONResponse:
    """CloudEvents 1.0 over its HTTP binding: one event (structured), a JSON array (batch)
    or the attributes as ``ce-*`` headers and the data as the body (binary); 202 once every
    one is durable."""
    raws: list[Any] = []
    try:
        _require(user, Action.REPORT)
        _producer(request)
        has_ce_headers = any(name.lower().startswith(CE_PREFIX) for name in request.headers)
        if not has_ce_headers and _media_type(request) not in JSON_TYPES:
            raise Refusal(
                415,
                _err(
                    "content-type",
                    f"send JSON ({', '.join(JSON_TYPES)}) or binary mode (ce-* headers)",
                ),
                reason="bad_request",
            )
        body = await _body(request)
        settings = request.app.state.settings
        try:
            received = cloudevents_http.read_request(
                request.headers.get("content-type"),
                request.headers.items(),
                body,
                max_data_bytes=settings.ingest_max_body_bytes,
            )
        except cloudevents_http.BindingError as exc:
            raise Refusal(
                exc.status,
                exc.errors,
                reason={413: "too_large", 422: "invalid"}.get(exc.status, "bad_request"),
            ) from None
        raws = received.events
        limit: int = settings.ingest_max_events
        if not raws:
            raise Refusal(422, _err("body", "an empty batch"))
        if len(raws) > limit:
            raise Refusal(
                413,
                _err("body", f"{len(raws)} events; the limit is {limit} per request"),
                reason="too_large",
            )
        envelopes = _dedupe(_validate_all(raws, org))
        _check_scope(user, org, envelopes)
        _rate_limit(request, envelopes)
        ids = await _accept(request, envelopes)
    except Refusal as refusal:
        return _refused(request, refusal, raws)
    return JSONResponse({"accepted": ids}, status_code=202)


# --- staff reports ------------------------------------------------------------------------

_REPORT_DATA = reports.REPORT_DATA
_REPORT_ENVELOPE = reports.REPORT_ENVELOPE


@router.post(
    "/reports",
    status_code=202,
    openapi_extra=openapi.reports_operation(),
    responses=openapi.answers(400, 401, 403, 411, 413, 415, 422, 429, 503, 507, accepted="report"),
)
async def post_report(request: Request, user: CurrentUser, org: Org) -> JSONResponse:
    """A staff incident report (JSON or form). Anyone may report (alle har ansvar)."""
    try:
        _require(user, Action.REPORT)
        _producer(request)
        media = _media_type(request)
        if media in FORM_TYPES:
            limit: int = request.app.state.settings.ingest_max_body_bytes
            declared = request.headers.get("content-length", "")
            if not declared.isdigit() or int(declared) > limit:
                raise Refusal(
                    413 if declared.isdigit() else 411,
                    _err("body", f"a form needs a Content-Length of at most {limit} bytes"),
                    reason="too_large",
                )
            form = await request.form()
            fields: dict[str, Any] = {
                k: v for k, v in form.items() if isinstance(v, str) and v.strip() != ""
            }
            if any(jsonlimits.NUL in k + v for k, v in fields.items()):
                raise Refusal(422, _err("body", jsonlimits.NUL_MESSAGE))
        elif media in JSON_TYPES:
            fields = _json(await _body(request))
            if not isinstance(fields, dict):
                raise Refusal(422, _err("body", "a report is a JSON object"))
        else:
            raise Refusal(415, _err("content-type", "send JSON or a form"), reason="bad_request")
        unknown = sorted(set(fields) - set(_REPORT_DATA) - set(_REPORT_ENVELOPE))
        if unknown:
            raise Refusal(422, [e for name in unknown for e in _err(name, "unknown field")])
        unit = fields.get("unit") or user.unit
        if not unit:
            raise Refusal(422, _err("unit", "hvilken enhet? / the unit is required"))
        raw = reports.report_event(
            fields,
            reporter=user.name,
            unit=unit,
            event_id=str(fields.get("id") or uuid.uuid4()),
            time=fields.get("time") or datetime.now(UTC).isoformat(),
        )
        if fields.get("exercise"):
            _require(user, Action.EXERCISE)
            raw["exercise"] = fields["exercise"]
        if user.role == Role.EXERCISE_CONTROLLER and not raw.get("exercise"):
            raise Refusal(
                403, _err("exercise", "rollen kan bare sende øvelseshendelser / exercise only")
            )
        try:
            env = validate_event(raw, known_units=set(org.units))
        except EventError as exc:
            raise Refusal(
                422,
                [{**e, "field": e["field"].removeprefix("data.")} for e in exc.errors],
            ) from None
        _rate_limit(request, [env])
        ids = await _accept(request, [env])
    except Refusal as refusal:
        return _refused(request, refusal, [{"type": REPORT_TYPE}])
    return JSONResponse({"accepted": ids, "id": ids[0]}, status_code=202)


# --- CAP 1.2 ------------------------------------------------------------------------------

#: CAP documents parsed at once, each in a worker thread; more wait without holding the loop.
CAP_PARSERS = 1


def _cap_slots(request: Request) -> asyncio.Semaphore:
    slots: asyncio.Semaphore | None = getattr(request.app.state, "cap_slots", None)
    if slots is None:
        slots = request.app.state.cap_slots = asyncio.Semaphore(CAP_PARSERS)
    return slots


def _cap_limits(settings: Any) -> cap.Limits:
    return cap.Limits(
        infos=settings.cap_max_infos,
        areas=settings.cap_max_areas,
        shapes=settings.cap_max_shapes,
        polygon_points=settings.cap_max_polygon_points,
    )


def _read_alert(
    body: bytes, limits: cap.Limits, units: list[Any]
) -> tuple[cap.Alert, dict[str, str]]:
    """Parse, validate and match (CPU work, run in a worker thread)."""
    alert = cap.parse_alert(body, limits)
    return alert, cap.affected_units(alert, units)


async def _referenced_units(session: Any, alert: cap.Alert) -> list[str]:
    """Units that the alerts named in ``references`` reached (from the evidence store)."""
    units: list[str] = []
    for identifier in alert.referenced_identifiers:
        rows = await session.exec(
            select(RawEvent.unit).where(
                RawEvent.type == cap.WARNING_TYPE,
                col(RawEvent.id).startswith(identifier + "/", autoescape=True),
            )
        )
        units += [u for u in rows.all() if u and u not in units]
    return units


@router.post(
    "/cap",
    status_code=202,
    openapi_extra=openapi.cap_operation(),
    responses=openapi.answers(400, 401, 403, 413, 415, 422, 429, 503, 507, accepted="cap"),
)
async def post_cap(
    request: Request,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    exercise: Annotated[
        str | None, Query(min_length=1, max_length=120, description="exercise id (Exercise)")
    ] = None,
) -> JSONResponse:
    """An OASIS CAP 1.2 alert → one warning event per unit inside its polygons/circles, or
    (an area without either) named by its county/municipality geocodes."""
    raws = [{"type": cap.WARNING_TYPE}]
    try:
        _require(user, Action.EXERCISE if exercise else Action.REPORT)
        _producer(request)
        if _media_type(request) not in CAP_TYPES:
            raise Refusal(
                415,
                _err("content-type", f"send CAP XML ({', '.join(CAP_TYPES)})"),
                reason="bad_request",
            )
        settings = request.app.state.settings
        body = await _body(request, settings.cap_max_body_bytes, "CRISIS_CAP_MAX_BODY_BYTES")
        try:
            async with _cap_slots(request):
                alert, in_area = await asyncio.to_thread(
                    _read_alert, body, _cap_limits(settings), list(org.units.values())
                )
        except cap.CapError as exc:
            raise Refusal(
                400 if exc.malformed else 422,
                exc.errors,
                reason="bad_request" if exc.malformed else "invalid",
            ) from None
        if alert.status == "Exercise" and not exercise:
            raise Refusal(
                422,
                _err(
                    "exercise",
                    "status Exercise is only accepted inside an exercise: "
                    "add ?exercise=<exercise id>",
                ),
            )
        if alert.status != "Exercise" and exercise:
            raise Refusal(
                422,
                _err(
                    "status",
                    f"status {alert.status} cannot be posted into an exercise; "
                    "an exercise inject uses status Exercise",
                ),
            )
        if user.role == Role.EXERCISE_CONTROLLER and not exercise:
            raise Refusal(
                403, _err("exercise", "rollen kan bare sende øvelseshendelser / exercise only")
            )
        dry = {"identifier": alert.identifier, "units": sorted(in_area)}
        if alert.status in ("Test", "Draft", "System") or alert.msg_type in ("Ack", "Error"):
            what = alert.status if alert.status in ("Test", "Draft", "System") else alert.msg_type
            note = (
                f"{what}: validert, ingen hendelse / validated, no event produced "
                "(never opens an incident); 'units' shows who it would reach"
            )
            return JSONResponse({"accepted": [], "note": note, **dry}, status_code=202)
        referenced: list[str] = []
        if alert.msg_type in ("Update", "Cancel"):
            referenced = await _referenced_units(session, alert)
        raw_events = cap.warning_events(
            alert, in_area, units_referenced=referenced, exercise=exercise
        )
        # Geocodes we cannot resolve (EMMA_ID, ...) are named, never silently dropped.
        warned = {"warnings": unresolved} if (unresolved := cap.unresolved_geocodes(alert)) else {}
        if not raw_events:
            reason = "no unit lies inside its areas"
            if not cap.has_geometry(alert):
                reason = (
                    "it has no polygon or circle, and no county or municipality number of a "
                    "unit (nor references a known alert)"
                )
            note = f"ingen enhet berørt / no unit affected: {reason}"
            return JSONResponse({"accepted": [], "note": note, **dry, **warned}, status_code=202)
        envelopes = _validate_all(raw_events, org)
        _check_scope(user, org, envelopes)
        _rate_limit(request, envelopes)
        ids = await _accept(request, envelopes)
    except Refusal as refusal:
        return _refused(request, refusal, raws)
    return JSONResponse(
        {
            "accepted": ids,
            "units": [e.unit for e in envelopes],
            "identifier": alert.identifier,
            **warned,
        },
        status_code=202,
    )
