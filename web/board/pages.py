"""The board's pages: server-rendered Jinja2, a little vendored JavaScript, no front-end build.

Everything shown about an incident is read from its crisis log (``crisis.projection``), so
the board shows what the worker, the playbooks and the notifiers write as it lands. Times are
shown in Europe/Oslo with UTC on hover; Norwegian first, ``?lang=en`` switches (a cookie).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlmodel import col, select

from crisis import log
from crisis.accounts.models import User
from crisis.clock import utcnow
from crisis.domain import permissions
from crisis.domain.organisation import ACCOUNTABLE_ROLES, DAILY_ROLES
from crisis.domain.rules import COERCIVE_MEASURES
from crisis.domain.vocabulary import LEVEL_ORDER, EntryKind, Role, Status
from crisis.log import labels, privacy, projection, sitreps
from crisis.log.models import Incident, LogEntry, SitRepStatus
from crisis.review import timeline
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS
from playbooks import engine
from web.api.lessons import follow_ups_across
from web.api.sitreps import readable
from web.api.violations import get_library
from web.board import i18n, metricsfmt, triage
from web.board import map as boardmap
from web.board.feed import head
from web.deps import RowId, SessionDep, scope_of, user_of

router = APIRouter(tags=["board"], include_in_schema=False)

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".geojson": "application/geo+json",
}
OSLO = ZoneInfo("Europe/Oslo")
SEVERITY_CLASS = {5: "sev5", 4: "sev4", 3: "sev3", 2: "sev2", 1: "sev1", 0: "sev0"}
#: Role references a task form offers: the unit's daily roles, then the region's and KDI's
#: accountable ones (likhetsprinsippet: no role the organisation lacks).
ROLE_CHOICES = (
    *DAILY_ROLES,
    *(f"region:{r}" for r in ACCOUNTABLE_ROLES),
    *(f"kdi:{r}" for r in ACCOUNTABLE_ROLES),
)


def oslo(value: datetime | None, fmt: str = "%d.%m.%Y %H:%M") -> Markup:
    """A <time> in Oslo time with the UTC instant on hover."""
    if value is None:
        return Markup("–")
    utc = value.astimezone(ZoneInfo("UTC"))
    return Markup('<time datetime="{iso}" title="UTC {u}">{local}</time>').format(
        iso=utc.isoformat(),
        u=utc.strftime("%Y-%m-%d %H:%M:%S"),
        local=value.astimezone(OSLO).strftime(fmt),
    )


def type_label(incident_type: str, lang: str = "nb") -> str:
    """The incident type as staff say it (bokmål, or English), else the type's own name."""
    labels = INCIDENT_TYPE_LABELS.get(incident_type)
    return labels[1 if lang == "en" else 0] if labels else incident_type


def environment(app: Any) -> Environment:
    env: Environment | None = getattr(app.state, "board_templates", None)
    if env is None:
        env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["oslo"] = oslo
        env.filters["isoutc"] = lambda v: v.isoformat() if v else ""
        env.filters["oslo_input"] = lambda v: (
            v.astimezone(OSLO).strftime("%Y-%m-%dT%H:%M") if v else ""
        )
        env.filters.update(metricsfmt.FILTERS)
        env.globals["sevclass"] = lambda s: SEVERITY_CLASS.get(int(s or 0), "sev0")
        env.globals["coercive_measures"] = sorted(COERCIVE_MEASURES)
        env.globals["type_label"] = type_label
        env.globals["personal_fields"] = list(privacy.PERSONAL_FIELDS)
        env.filters["human"] = labels.humanise
        app.state.board_templates = env
    return env


async def page_user(request: Request, session: Any) -> User | None:
    return await user_of(request, session, token=None)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=status.HTTP_303_SEE_OTHER)


def render(request: Request, name: str, *, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    lang = i18n.pick_lang(request)
    template = environment(request.app).get_template(name)
    ctx.setdefault("now", utcnow())
    html = template.render(
        request=request, lang=lang, t=i18n.translator(lang), path=request.url.path, **ctx
    )
    response = HTMLResponse(html, status_code=status_code)
    if request.query_params.get("lang") in i18n.LANGS:
        response.set_cookie(
            i18n.COOKIE, request.query_params["lang"], max_age=365 * 86400, samesite="lax"
        )
    return response


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    path = STATIC / name
    if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix])


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=next if next.startswith("/") else "/")


async def _open_incidents(session: Any, user: User, request: Request) -> list[Incident]:
    scope = scope_of(user, request.app.state.organisation)
    stmt = (
        select(Incident)
        .where(Incident.status == Status.OPEN.value)
        .order_by(col(Incident.severity).desc(), col(Incident.opened_at).desc())
    )
    return list((await session.exec(scope.narrow(stmt))).all())


async def _overview_context(session: Any, user: User, request: Request) -> dict[str, Any]:
    org = request.app.state.organisation
    incidents = await _open_incidents(session, user, request)
    only = request.query_params.get("unit")
    worst: dict[str, tuple[int, bool, int]] = {}
    for i in incidents:
        sev, exercise_only, count = worst.get(i.unit, (0, True, 0))
        real = i.exercise is None
        if real and exercise_only:
            sev = 0  # a real incident outranks any exercise
        if real or exercise_only:
            sev = max(sev, i.severity)
        worst[i.unit] = (sev, exercise_only and not real, count + 1)
    by_level = {
        lvl: sum(1 for i in incidents if i.level == lvl) for lvl in ("unit", "region", "kdi", "jd")
    }
    by_severity = {s: sum(1 for i in incidents if i.severity == s) for s in (5, 4, 3, 2, 1)}
    shown = [i for i in incidents if i.unit == only] if only else incidents
    library = get_library(request)
    return {
        "incidents": shown,
        "rows": await triage.rows(
            session,
            incidents=shown,
            library=library,
            now=utcnow(),
            cache=triage.cache_of(request.app.state),
        ),
        "unit_filter": org.units[only].name if only in org.units else None,
        "units": org.units,
        "by_level": by_level,
        "by_severity": by_severity,
        "any_exercise": any(i.exercise for i in incidents),
        "map_width": boardmap.WIDTH,
        "map_height": boardmap.HEIGHT,
        "outline": boardmap.outline_paths(),
        "tiles": boardmap.tiles(getattr(request.app.state.settings, "map_tile_url", None)),
        "dots": boardmap.dots(org, worst),
        "overdue_follow_ups": await follow_ups_across(
            session=session, user=user, org=org, overdue=True
        ),
    }


@router.get("/", response_class=HTMLResponse, response_model=None)
async def overview(request: Request, session: SessionDep) -> Response:
    user = await page_user(request, session)
    if user is None:
        return to_login(request)
    if user.role == Role.MINISTRY:
        return await ministry_page(request, session, user)
    ctx = await _overview_context(session, user, request)
    return render(
        request, "overview.html", user=user, resume=await head(session), page="overview", **ctx
    )


@router.get("/board/overview", response_class=HTMLResponse, response_model=None)
async def overview_fragment(request: Request, session: SessionDep) -> Response:
    user = await page_user(request, session)
    if user is None or user.role == Role.MINISTRY:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED)
    ctx = await _overview_context(session, user, request)
    return render(request, "_overview_body.html", user=user, **ctx)


async def ministry_page(request: Request, session: Any, user: User) -> Response:
    reports = await sitreps.list_reports(session, approved_only=True, include_exercises=False)
    titles = {}
    for r in reports:
        incident = await session.get(Incident, r.incident_id)
        titles[r.id] = incident.title if incident else r.incident_id
    return render(
        request,
        "ministry.html",
        user=user,
        reports=reports,
        titles=titles,
        resume=await head(session),
        page="ministry",
    )


async def _incident_for(request: Request, session: Any, user: User, incident_id: str) -> Incident:
    incident: Incident | None = await session.get(Incident, incident_id)
    if incident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "ukjent hendelse / unknown incident")
    if user.role == Role.MINISTRY or not scope_of(user, request.app.state.organisation).allows(
        incident
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    return incident


async def _read(
    session: Any, user: User, incident: Incident, entries: list[LogEntry], channel: str
) -> list[privacy.Shown]:
    """Entries as this user may see them; unmasked references are recorded (data_access)."""
    shown = await privacy.read_entries(
        session, user=user, incident_id=incident.id, entries=entries, channel=channel
    )
    await session.commit()
    return list(shown)


def _closing(user: User, incident: Incident, entries: list[LogEntry]) -> dict[str, Any] | None:
    """The status change that closed the incident, as this user may see it; None while open."""
    if incident.status != Status.CLOSED.value:
        return None
    for entry in reversed(entries):
        if entry.kind == EntryKind.STATUS_CHANGE and entry.data.get("status") == Status.CLOSED:
            item, _ = privacy.entry_for_viewer(user, entry)
            return {"e": entry, "text": item.text, "data": item.data}
    return None


def _trigger(shown: list[privacy.Shown]) -> privacy.Shown | None:
    """The event that opened the incident: its first source event, else its first entry."""
    for item in shown:
        if item.entry.kind == EntryKind.SOURCE_EVENT:
            return item
    return shown[0] if shown else None


async def _violations(request: Request, session: Any, incident: Incident) -> list[Any]:
    """The principles the incident breaks now: the service the violations API calls."""
    library = get_library(request)
    return list(await engine.violations(session, incident_id=incident.id, library=library))


#: The log filters of the incident page (GET parameters, as on the review page).
LOG_FILTERS = ("kind", "actor", "group", "unit", "events")


def _log_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    return {
        "kinds": [k for k in q.getlist("kind") if k],
        "actor": q.get("actor", ""),
        "group": q.get("group", ""),
        "unit": q.get("unit", ""),
        "events": q.get("events", "show"),
    }


def _group_counts(row: timeline.Row) -> dict[str, dict[str, int]]:
    """A folded update's recipients per group and latest status, worst status first."""
    order = {s: i for i, s in enumerate(projection.DELIVERY_ORDER)}
    out: dict[str, dict[str, int]] = {}
    for d in row.deliveries:
        counts = out.setdefault(d.group, {})
        counts[d.status] = counts.get(d.status, 0) + 1
    return {
        g: dict(sorted(c.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))
        for g, c in out.items()
    }


def _log_context(shown: list[privacy.Shown], filters: dict[str, Any]) -> dict[str, Any]:
    """The log as rows, deliveries folded per update (``crisis.review.timeline``)."""
    rows = timeline.rows(
        entries=shown,
        kinds=filters["kinds"] or None,
        actor=filters["actor"] or None,
        group=filters["group"] or None,
        unit=filters["unit"] or None,
        source_events=filters["events"] != "hide",
    )
    return {
        "rows": list(reversed(rows)),
        "total": len(timeline.fold(shown)),
        "options": timeline.options(entries=shown),
        "filters": filters,
        "group_counts": _group_counts,
        "filtered": any(filters[k] for k in ("kinds", "actor", "group", "unit"))
        or filters["events"] == "hide",
    }


def _labeller(lang: str) -> Any:
    return lambda table, code: labels.label(table, code, lang)


async def _panels_context(
    request: Request, session: Any, user: User, incident: Incident, *, whole_log: bool = False
) -> dict[str, Any]:
    """The side panels; ``whole_log``: also every entry as shown (``shown``), read once."""
    from web.board.messages import messages_context  # it renders with this module's helpers

    entries = await log.timeline(session, incident.id)
    decisions = projection.decisions(entries)
    # One read, one audit row: the page's log already shows the decisions the panel repeats.
    shown = await _read(session, user, incident, entries if whole_log else decisions, "page")
    wanted = {e.id for e in decisions}
    groups = projection.notifications(entries)
    org = request.app.state.organisation
    region = org.units[incident.unit].region if incident.unit in org.units else None
    now = utcnow()
    tasks = projection.tasks(entries)
    closed = incident.status == Status.CLOSED.value
    return {
        "incident": incident,
        "closed": closed,
        "closing": _closing(user, incident, entries),
        "entries": entries,
        "tasks": tasks,
        "overdue_tasks": [
            t for t in tasks if not closed and t.deadline and t.deadline < now and not t.done
        ],
        "shown": shown,
        "decisions": [
            {"e": item.entry, "text": item.text, "data": item.data}
            for item in shown
            if item.entry.id in wanted
        ],
        "contacts": projection.contacts(entries),
        "groups": groups,
        "held": projection.held_updates(groups),
        "violations": await _violations(request, session, incident),
        "reports": await sitreps.list_reports(
            session, incident_id=incident.id, approved_only=False
        ),
        "can_approve": sitreps.can_approve(user, incident, region_of_owner=region),
        "writer": permissions.allowed(user.role, permissions.Action.WRITE_ENTRY),
        "can": {a.value: permissions.allowed(user.role, a) for a in permissions.Action},
        "units": org.units,
        "unit_names": {u.id: u.name for u in org.units.values()},
        "label": _labeller(i18n.pick_lang(request)),
        "now": now,
        **await messages_context(session, user, incident, entries),
    }


def _next_level(level: str) -> str | None:
    order = [lvl.value for lvl in LEVEL_ORDER]
    at = order.index(level) if level in order else len(order)
    return order[at + 1] if at + 1 < len(order) else None


@router.get("/incidents/{incident_id}", response_class=HTMLResponse, response_model=None)
async def incident_page(incident_id: str, request: Request, session: SessionDep) -> Response:
    user = await page_user(request, session)
    if user is None:
        return to_login(request)
    incident = await _incident_for(request, session, user, incident_id)
    ctx = await _panels_context(request, session, user, incident, whole_log=True)
    lang = i18n.pick_lang(request)
    unit = request.app.state.organisation.units.get(incident.unit)
    trigger = _trigger(ctx["shown"])
    return render(
        request,
        "incident.html",
        user=user,
        unit_name=unit.name if unit else incident.unit,
        resume=await head(session),
        page="incident",
        kind_labels=i18n.labels(lang, "kind"),
        level_labels={code: labels.label("level", code, lang) for code in labels.LEVELS},
        trigger=trigger,
        trigger_refs=privacy.personal_items(trigger.data) if trigger else [],
        next_level=_next_level(incident.level),
        roles=ROLE_CHOICES,
        **_log_context(ctx["shown"], _log_filters(request)),
        **ctx,
    )


@router.get("/incidents/{incident_id}/log", response_class=HTMLResponse, response_model=None)
async def incident_log(incident_id: str, request: Request, session: SessionDep) -> Response:
    """The log alone, filtered as the page is (the script refreshes it as entries land)."""
    user = await page_user(request, session)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED)
    incident = await _incident_for(request, session, user, incident_id)
    entries = await log.timeline(session, incident.id)
    shown = await _read(session, user, incident, entries, "page")
    return render(
        request,
        "_log.html",
        user=user,
        incident=incident,
        unit_names={u.id: u.name for u in request.app.state.organisation.units.values()},
        label=_labeller(i18n.pick_lang(request)),
        **_log_context(shown, _log_filters(request)),
    )


@router.get("/incidents/{incident_id}/panels", response_class=HTMLResponse, response_model=None)
async def incident_panels(incident_id: str, request: Request, session: SessionDep) -> Response:
    user = await page_user(request, session)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED)
    incident = await _incident_for(request, session, user, incident_id)
    ctx = await _panels_context(request, session, user, incident)
    return render(request, "_panels.html", user=user, **ctx)


@router.get("/sitreps/{sitrep_id}", response_class=HTMLResponse, response_model=None)
async def sitrep_page(sitrep_id: RowId, request: Request, session: SessionDep) -> Response:
    user = await page_user(request, session)
    if user is None:
        return to_login(request)
    try:
        view = await readable(session, user, request.app.state.organisation, sitrep_id)
    except log.RuleViolation as exc:
        return render(request, "error.html", user=user, status_code=exc.status, message=str(exc))
    incident = await session.get(Incident, view.report.incident_id)
    assert incident is not None  # a report's incident exists (foreign key)
    org = request.app.state.organisation
    region = org.units[incident.unit].region if incident.unit in org.units else None
    return render(
        request,
        "sitrep.html",
        user=user,
        view=view,
        incident=incident,
        draft=view.report.status == SitRepStatus.DRAFT,
        can_approve=user.role != Role.MINISTRY
        and sitreps.can_approve(user, incident, region_of_owner=region),
        writer=permissions.allowed(user.role, permissions.Action.WRITE_ENTRY),
        resume=await head(session),
        page="sitrep",
    )
