"""The board's intake forms: a staff report, and a sensor event or CAP warning posted by hand.

Each form posts from the browser to the same endpoint a system would use
(``POST /api/v1/reports``, ``/events``, ``/cap``), so the rules (role, scope, exercise-only,
validation) are the API's and its errors are shown at the form. The event form is built from
the event-type catalogue: a field per field of the type's ``data`` model.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic.fields import FieldInfo

from crisis.accounts.models import User
from crisis.domain import permissions
from crisis.domain.vocabulary import Role
from crisis.sources import catalogue
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS
from crisis.sources.reports import REPORT_REFS
from web.board import i18n
from web.board.feed import head
from web.board.pages import page_user, render, to_login
from web.deps import SessionDep, scope_of

router = APIRouter(tags=["board"], include_in_schema=False)

#: The report form's categories: the value sent (a word staff use, one of
#: ``REPORT_CATEGORIES``) → the incident type it opens. One per incident type.
REPORT_FORM_CATEGORIES: Final[dict[str, str]] = {
    "vold og trusler": "violence_threat",
    "selvskading": "self_harm",
    "livløs": "breath_motion_absent",
    "rømning": "escape",
    "uteblivelse": "failure_to_return",
    "gisseltaking": "hostage",
    "brann": "fire",
    "smitteutbrudd": "infectious_disease",
    "ikt": "infrastructure_outage",
    "dataangrep": "cyber_attack",
    "ekstremvær": "extreme_weather",
    "ek-brudd": "ek_breach",
    "omvendt voldsalarm": "reverse_violence_alarm",
    "mediestorm": "media_storm",
    "evakuering": "capacity_closure",
    "sikkerhetspolitisk": "security_political",
}


@dataclass(frozen=True)
class Category:
    value: str
    incident_type: str
    label: str


def report_categories(lang: str) -> list[Category]:
    """The form's categories with the incident type's label in ``lang``, sorted by label."""
    index = 1 if lang == "en" else 0
    out = [
        Category(value, kind, INCIDENT_TYPE_LABELS[kind][index])
        for value, kind in REPORT_FORM_CATEGORIES.items()
    ]
    return sorted(out, key=lambda c: c.label)


def _units(request: Request, user: User) -> list[Any]:
    org = request.app.state.organisation
    scope = scope_of(user, org)
    return [u for u in org.units.values() if scope.all_units or u.id in scope.units]


def _forbidden(request: Request, user: User) -> Response | None:
    if permissions.allowed(user.role, permissions.Action.REPORT):
        return None
    message = "rollen din kan ikke melde hendelser / your role may not report"
    return render(request, "error.html", user=user, status_code=403, message=message)


@router.get("/report", response_class=HTMLResponse, response_model=None)
async def report_page(request: Request, session: SessionDep) -> Response:
    user = await page_user(request, session)
    if user is None:
        return to_login(request)
    refused = _forbidden(request, user)
    if refused is not None:
        return refused
    return render(
        request,
        "report.html",
        user=user,
        units=_units(request, user),
        categories=report_categories(i18n.pick_lang(request)),
        refs=REPORT_REFS,
        exercise_only=user.role == Role.EXERCISE_CONTROLLER,
        resume=await head(session),
        page="report",
    )


# --- sensor events and CAP warnings by hand -------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # 'text', 'int', 'float', 'bool', 'choice', 'list', 'datetime'
    required: bool
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class EventForm:
    name: str  # short type, e.g. 'sensor.breath_absent'
    type: str  # the full type
    incident_type: str
    severity: int
    fields: tuple[Field, ...]


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for m in info.metadata:
        low = getattr(m, "ge", low)
        high = getattr(m, "le", high)
    return low, high


def _field(name: str, info: FieldInfo) -> Field:
    ann: Any = info.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(args) == 1:
        ann = args[0]
    low, high = _bounds(info)
    required = info.is_required()
    if typing.get_origin(ann) is typing.Literal:
        return Field(name, "choice", required, tuple(str(a) for a in typing.get_args(ann)))
    if typing.get_origin(ann) is list:
        return Field(name, "list", required)
    kind = {int: "int", float: "float", bool: "bool"}.get(ann, "text")
    if getattr(ann, "__name__", "") == "datetime":
        kind = "datetime"
    return Field(name, kind, required, (), low, high)


def event_forms() -> list[EventForm]:
    """A form per sensor type of the catalogue, its fields from the type's ``data`` model."""
    return [
        EventForm(
            kind.name,
            kind.type,
            kind.incident_type,
            kind.severity,
            tuple(_field(n, f) for n, f in kind.model.model_fields.items()),
        )
        for kind in catalogue.kinds()
        if kind.sensor is not None
    ]


@router.get("/events/new", response_class=HTMLResponse, response_model=None)
async def event_page(request: Request, session: SessionDep) -> Response:
    """One form per sensor type (``?kind=`` picks one) and a CAP form; the API decides."""
    user = await page_user(request, session)
    if user is None:
        return to_login(request)
    refused = _forbidden(request, user)
    if refused is not None:
        return refused
    forms = event_forms()
    wanted = request.query_params.get("kind") or forms[0].name
    chosen = next((f for f in forms if f.name == wanted), forms[0])
    return render(
        request,
        "event_form.html",
        user=user,
        units=_units(request, user),
        forms=forms,
        form=chosen,
        exercise_only=user.role == Role.EXERCISE_CONTROLLER,
        may_exercise=permissions.allowed(user.role, permissions.Action.EXERCISE),
        resume=await head(session),
        page="event-form",
    )
