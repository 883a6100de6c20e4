"""OASIS CAP 1.2: parse safely, validate by the standard's rules, match areas against units.

Pure functions (no I/O): the web layer feeds XML bytes in and gets envelopes out (in a worker
thread: parsing and matching are CPU work). Parsing is hardened (no DTD, no entities, no
network); an XML error is ``CapError(malformed=True)`` and a rule violation ``CapError`` with
``{index, field, message}`` per problem (the first :data:`MAX_ERRORS`), fields as paths like
``info[0].area[1].polygon[0]``. What a document may hold (:class:`Limits`) is counted on the
parsed tree before any of it is read. Polygons are "lat,lon" pairs, kept as shapely polygons
(lon/lat) and matched against all units at once (an STR tree); circles are "lat,lon
radius_km", matched by great-circle (haversine) distance. An area without polygon or
circle is matched by its ``<geocode>``: Norwegian county and municipality numbers against
the units' own (:data:`COUNTY_CODES`, :data:`MUNICIPALITY_CODES`); other codes, MeteoAlarm's
``EMMA_ID`` among them, are not resolved and are named in :func:`unresolved_geocodes`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import shapely
from lxml import etree
from shapely.geometry import Point, Polygon

from crisis.sources.events import PREFIX

NS = "urn:oasis:names:tc:emergency:cap:1.2"
WARNING_TYPE = PREFIX + "warning.cap"

STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPES = ("Alert", "Update", "Cancel", "Ack", "Error")
SCOPES = ("Public", "Restricted", "Private")
CATEGORIES = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
)
RESPONSE_TYPES = (
    "Shelter",
    "Evacuate",
    "Prepare",
    "Execute",
    "Avoid",
    "Monitor",
    "Assess",
    "AllClear",
    "None",
)
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")

#: CAP 1.2 dateTime: offset required, "Z" and fractions are not allowed by the standard.
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")
_FORBIDDEN_ID_CHARS = re.compile(r"[\s,<&]")
_EARTH_RADIUS_KM = 6371.0088

_ALERT_ELEMENTS = {
    "identifier": (True, False),  # name → (required, repeatable)
    "sender": (True, False),
    "sent": (True, False),
    "status": (True, False),
    "msgType": (True, False),
    "source": (False, False),
    "scope": (True, False),
    "restriction": (False, False),
    "addresses": (False, False),
    "code": (False, True),
    "note": (False, False),
    "references": (False, False),
    "incidents": (False, False),
    "info": (False, True),
}
_INFO_ELEMENTS = {
    "language": (False, False),
    "category": (True, True),
    "event": (True, False),
    "responseType": (False, True),
    "urgency": (True, False),
    "severity": (True, False),
    "certainty": (True, False),
    "audience": (False, False),
    "eventCode": (False, True),
    "effective": (False, False),
    "onset": (False, False),
    "expires": (False, False),
    "senderName": (False, False),
    "headline": (False, False),
    "description": (False, False),
    "instruction": (False, False),
    "web": (False, False),
    "contact": (False, False),
    "parameter": (False, True),
    "resource": (False, True),
    "area": (False, True),
}
_AREA_ELEMENTS = {
    "areaDesc": (True, False),
    "polygon": (False, True),
    "circle": (False, True),
    "geocode": (False, True),
    "altitude": (False, False),
    "ceiling": (False, False),
}


#: Problems reported for one document; a hostile one could otherwise name one per element.
MAX_ERRORS = 100


@dataclass(frozen=True)
class Limits:
    """What one alert may hold (the settings ``CRISIS_CAP_MAX_*``); past one, a 422 naming it.

    ``elements`` bounds the whole document (any namespace), so that the checks and the walk
    after them are bounded too; the body size itself is the web layer's.
    """

    infos: int = 10
    areas: int = 100
    shapes: int = 1000  # <polygon> and <circle> elements
    polygon_points: int = 5000
    elements: int = 20_000


class CapError(ValueError):
    """The document is not valid CAP 1.2; ``malformed`` when it is not even XML."""

    def __init__(self, errors: list[dict[str, Any]], *, malformed: bool = False) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors
        self.malformed = malformed


@dataclass(frozen=True)
class Area:
    desc: str
    polygons: tuple[Polygon, ...] = ()  # shapely polygons: x = lon, y = lat
    circles: tuple[tuple[float, float, float], ...] = ()  # (lat, lon, radius_km)
    geocodes: tuple[tuple[str, str], ...] = ()

    @property
    def has_shape(self) -> bool:
        return bool(self.polygons or self.circles)

    def contains(self, lat: float, lon: float) -> bool:
        return bool(self.inside([(lat, lon)]))

    def inside(self, positions: Sequence[tuple[float, float]]) -> set[int]:
        """Indexes of the (lat, lon) positions inside (or on the edge of) the area."""
        hits: set[int] = set()
        if self.polygons and positions:
            tree = shapely.STRtree(self.polygons)
            points = [Point(lon, lat) for lat, lon in positions]
            found, _ = tree.query(points, predicate="covered_by")
            hits.update(int(i) for i in found)
        for c_lat, c_lon, radius in self.circles:
            hits.update(
                i
                for i, (lat, lon) in enumerate(positions)
                if haversine_km(lat, lon, c_lat, c_lon) <= radius
            )
        return hits


@dataclass(frozen=True)
class Info:
    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    sender_name: str | None = None
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    areas: tuple[Area, ...] = ()
    response_types: tuple[str, ...] = ()

    def parameter(self, name: str) -> str | None:
        return next((v for n, v in self.parameters if n == name), None)

    @property
    def norwegian(self) -> bool:
        return self.language.lower().split("-")[0] in {"no", "nb", "nn"}

    @property
    def english(self) -> bool:
        return self.language.lower().split("-")[0] == "en"


@dataclass(frozen=True)
class Alert:
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    scope: str
    source: str | None = None
    note: str | None = None
    references: tuple[str, ...] = ()
    infos: tuple[Info, ...] = field(default=())

    @property
    def referenced_identifiers(self) -> list[str]:
        """The ``identifier`` part of each "sender,identifier,sent" reference."""
        return [ref.split(",")[1] for ref in self.references]


class HasPosition(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km (mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


# --- parsing ----------------------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def add(self, field_: str, message: str) -> None:
        if len(self.errors) == MAX_ERRORS:
            message = f"flere feil er ikke listet / further problems not listed ({MAX_ERRORS})"
            self.errors.append({"index": None, "field": "body", "message": message})
        if len(self.errors) > MAX_ERRORS:
            return
        self.errors.append({"index": None, "field": field_, "message": message})


def _local(el: etree._Element) -> str | None:
    """Local name of a CAP-namespace element; None for other namespaces (extensions)."""
    tag = el.tag
    if not isinstance(tag, str) or not tag.startswith("{" + NS + "}"):
        return None
    return tag[len(NS) + 2 :]


def _children(
    el: etree._Element, allowed: Mapping[str, tuple[bool, bool]], path: str, errs: _Collector
) -> dict[str, list[etree._Element]]:
    found: dict[str, list[etree._Element]] = {}
    for child in el:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        name = _local(child)
        if name is None:
            if isinstance(child.tag, str) and child.tag.startswith("{"):
                continue  # another namespace: a permitted extension
            errs.add(f"{path}{child.tag}", f"not in the CAP 1.2 namespace ({NS})")
            continue
        if name not in allowed:
            errs.add(f"{path}{name}", "not a CAP 1.2 element here")
            continue
        found.setdefault(name, []).append(child)
    for name, (required, repeatable) in allowed.items():
        items = found.get(name, [])
        if required and not items:
            errs.add(f"{path}{name}", "required by CAP 1.2")
        if not repeatable and len(items) > 1:
            errs.add(f"{path}{name}", "may appear only once")
    return found


def _text(found: dict[str, list[etree._Element]], name: str) -> str | None:
    items = found.get(name)
    if not items:
        return None
    value = (items[0].text or "").strip()
    return value or None


def _texts(found: dict[str, list[etree._Element]], name: str) -> list[str]:
    return [(el.text or "").strip() for el in found.get(name, [])]


def _enum(value: str | None, allowed: tuple[str, ...], path: str, errs: _Collector) -> str:
    if value is None:
        return ""
    if value not in allowed:
        errs.add(path, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _datetime(value: str | None, path: str, errs: _Collector) -> datetime | None:
    if value is None:
        return None
    if not _DATETIME.match(value):
        errs.add(
            path,
            f"{value!r} is not a CAP dateTime (YYYY-MM-DDThh:mm:ss+hh:mm; 'Z' is not allowed)",
        )
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        errs.add(path, f"{value!r} is not a valid date and time")
        return None


def _pair(text: str) -> tuple[float, float]:
    lat_s, lon_s = text.split(",")
    lat, lon = float(lat_s), float(lon_s)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or math.isnan(lat) or math.isnan(lon):
        raise ValueError("coordinate out of range")
    return lat, lon


_PAIRS = re.compile(r"\s*[^\s,]+,[^\s,]+(?:\s+[^\s,]+,[^\s,]+)*\s*")


def _pairs(text: str) -> np.ndarray[Any, Any]:
    """The "lat,lon" pairs of a polygon as an (n, 2) array, checked as :func:`_pair` checks
    one. An array, not tuples: a heavy alert's points would be ~10^5 objects for the
    collector, whose passes hold the interpreter lock the event loop needs too."""
    if not _PAIRS.fullmatch(text):
        raise ValueError("not lat,lon pairs")
    coords = np.array(text.replace(",", " ").split(), dtype=float).reshape(-1, 2)
    if not (np.all(np.abs(coords[:, 0]) <= 90) and np.all(np.abs(coords[:, 1]) <= 180)):
        raise ValueError("coordinate out of range")  # NaN compares false: out of range too
    return coords


def _polygon(value: str, path: str, errs: _Collector) -> Polygon | None:
    try:
        coords = _pairs(value)
    except ValueError:
        errs.add(path, "a polygon is space-separated 'lat,lon' pairs (WGS 84 degrees)")
        return None
    if len(coords) < 4:
        errs.add(path, "a polygon needs at least 4 points")
        return None
    if not np.array_equal(coords[0], coords[-1]):
        errs.add(path, "a polygon must be closed: the first and last point must be the same")
        return None
    shape = shapely.polygons(coords[:, ::-1])
    if not shape.is_valid:
        errs.add(path, "the polygon crosses itself")
        return None
    return shape


def _circle(value: str, path: str, errs: _Collector) -> tuple[float, float, float] | None:
    try:
        centre, radius_s = value.split()
        lat, lon = _pair(centre)
        radius = float(radius_s)
        if radius < 0 or math.isnan(radius):
            raise ValueError("negative radius")
    except ValueError:
        errs.add(path, "a circle is 'lat,lon radius' with the radius in km")
        return None
    return lat, lon, radius


def _area(el: etree._Element, path: str, errs: _Collector) -> Area:
    found = _children(el, _AREA_ELEMENTS, path + ".", errs)
    polygons = []
    for i, text in enumerate(_texts(found, "polygon")):
        parsed = _polygon(text, f"{path}.polygon[{i}]", errs)
        if parsed is not None:
            polygons.append(parsed)
    circles = []
    for i, text in enumerate(_texts(found, "circle")):
        circle = _circle(text, f"{path}.circle[{i}]", errs)
        if circle is not None:
            circles.append(circle)
    if found.get("ceiling") and not found.get("altitude"):
        errs.add(f"{path}.ceiling", "ceiling is only allowed together with altitude")
    geocodes = []
    for i, gc in enumerate(found.get("geocode", [])):
        pair = _children(gc, {"valueName": (True, False), "value": (True, False)}, "", errs)
        name, value = _text(pair, "valueName"), _text(pair, "value")
        if name is None or value is None:
            errs.add(f"{path}.geocode[{i}]", "needs valueName and value")
        else:
            geocodes.append((name, value))
    return Area(
        desc=_text(found, "areaDesc") or "",
        polygons=tuple(polygons),
        circles=tuple(circles),
        geocodes=tuple(geocodes),
    )


def _info(el: etree._Element, path: str, errs: _Collector) -> Info:
    found = _children(el, _INFO_ELEMENTS, path + ".", errs)
    categories = tuple(
        _enum(c, CATEGORIES, f"{path}.category[{i}]", errs)
        for i, c in enumerate(_texts(found, "category"))
    )
    response_types = tuple(
        _enum(rt, RESPONSE_TYPES, f"{path}.responseType[{i}]", errs)
        for i, rt in enumerate(_texts(found, "responseType"))
    )
    parameters = []
    for i, p in enumerate(found.get("parameter", [])):
        pair = _children(p, {"valueName": (True, False), "value": (True, False)}, "", errs)
        name, value = _text(pair, "valueName"), _text(pair, "value")
        if name is None or value is None:
            errs.add(f"{path}.parameter[{i}]", "needs valueName and value")
        else:
            parameters.append((name, value))
    if not _text(found, "event") and found.get("event"):
        errs.add(f"{path}.event", "must not be empty")
    return Info(
        language=_text(found, "language") or "en-US",
        categories=categories,
        event=_text(found, "event") or "",
        urgency=_enum(_text(found, "urgency"), URGENCIES, f"{path}.urgency", errs),
        severity=_enum(_text(found, "severity"), SEVERITIES, f"{path}.severity", errs),
        certainty=_enum(_text(found, "certainty"), CERTAINTIES, f"{path}.certainty", errs),
        headline=_text(found, "headline"),
        description=_text(found, "description"),
        instruction=_text(found, "instruction"),
        web=_text(found, "web"),
        sender_name=_text(found, "senderName"),
        effective=_datetime(_text(found, "effective"), f"{path}.effective", errs),
        onset=_datetime(_text(found, "onset"), f"{path}.onset", errs),
        expires=_datetime(_text(found, "expires"), f"{path}.expires", errs),
        parameters=tuple(parameters),
        response_types=response_types,
        areas=tuple(
            _area(a, f"{path}.area[{i}]", errs) for i, a in enumerate(found.get("area", []))
        ),
    )


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _too_many(
    field_: str, what: tuple[str, str], count: int, limit: int, setting: str | None = None
) -> CapError:
    message = f"for mange {what[0]} / too many {what[1]}: {count}, the limit is {limit}"
    if setting:
        message += f" ({setting})"
    return CapError([{"index": None, "field": field_, "message": message}])


def check_limits(root: etree._Element, limits: Limits) -> None:
    """Raise CapError (one problem, naming the limit) when the document holds more than
    ``limits`` allow; counted by XPath on the parsed tree, before anything is walked."""
    ns = {"c": NS}

    def count(xpath: str) -> int:
        return int(root.xpath(f"count({xpath})", namespaces=ns))  # type: ignore[arg-type]

    elements = count("//*")
    if elements > limits.elements:
        raise _too_many("body", ("elementer", "elements"), elements, limits.elements)
    checks = (
        ("info", ("info-blokker", "<info> blocks"), "/c:alert/c:info", limits.infos, "INFOS"),
        ("area", ("områder", "<area> elements"), "//c:area", limits.areas, "AREAS"),
        (
            "polygon",
            ("polygoner og sirkler", "<polygon> and <circle> elements"),
            "//c:polygon | //c:circle",
            limits.shapes,
            "SHAPES",
        ),
    )
    for field_, what, xpath, limit, setting in checks:
        found = count(xpath)
        if found > limit:
            raise _too_many(field_, what, found, limit, f"CRISIS_CAP_MAX_{setting}")
    tag = "{" + NS + "}"
    for i, info in enumerate(root.iterchildren(tag + "info")):
        for j, area in enumerate(info.iterchildren(tag + "area")):
            for k, polygon in enumerate(area.iterchildren(tag + "polygon")):
                points = len((polygon.text or "").split())
                if points > limits.polygon_points:
                    raise _too_many(
                        f"info[{i}].area[{j}].polygon[{k}]",
                        ("punkter", "points"),
                        points,
                        limits.polygon_points,
                        "CRISIS_CAP_MAX_POLYGON_POINTS",
                    )


def parse_alert(data: bytes, limits: Limits | None = None) -> Alert:
    """Parse and validate one CAP 1.2 alert or raise CapError listing its problems; within
    ``limits`` (the defaults when None)."""
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise CapError(
            [{"index": None, "field": "body", "message": f"not well-formed XML: {exc}"}],
            malformed=True,
        ) from None
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise CapError(
            [{"index": None, "field": "body", "message": "a DOCTYPE/DTD is not accepted"}],
            malformed=True,
        )
    check_limits(root, limits or Limits())
    errs = _Collector()
    if root.tag != "{" + NS + "}alert":
        errs.add("alert", f"the root element must be <alert> in the namespace {NS}")
        raise CapError(errs.errors)
    found = _children(root, _ALERT_ELEMENTS, "", errs)
    identifier = _text(found, "identifier") or ""
    sender = _text(found, "sender") or ""
    for name, value in (("identifier", identifier), ("sender", sender)):
        if value and _FORBIDDEN_ID_CHARS.search(value):
            errs.add(name, "must not contain spaces, commas, '<' or '&'")
    status = _enum(_text(found, "status"), STATUSES, "status", errs)
    msg_type = _enum(_text(found, "msgType"), MSG_TYPES, "msgType", errs)
    scope = _enum(_text(found, "scope"), SCOPES, "scope", errs)
    if scope == "Restricted" and not _text(found, "restriction"):
        errs.add("restriction", "required when scope is Restricted")
    if scope == "Private" and not _text(found, "addresses"):
        errs.add("addresses", "required when scope is Private")
    sent = _datetime(_text(found, "sent"), "sent", errs)
    references = tuple((_text(found, "references") or "").split())
    for i, ref in enumerate(references):
        parts = ref.split(",")
        if len(parts) != 3 or not all(parts) or not _DATETIME.match(parts[2]):
            errs.add(f"references[{i}]", f"{ref!r} is not 'sender,identifier,sent'")
    if msg_type in ("Update", "Cancel") and not references:
        errs.add("references", f"a {msg_type} must name the alert(s) it refers to")
    infos = tuple(_info(el, f"info[{i}]", errs) for i, el in enumerate(found.get("info", [])))
    if msg_type in ("Alert", "Update") and not infos:
        errs.add("info", f"an {msg_type} needs at least one info block")
    if errs.errors:
        raise CapError(errs.errors)
    assert sent is not None
    return Alert(
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=status,
        msg_type=msg_type,
        scope=scope,
        source=_text(found, "source"),
        note=_text(found, "note"),
        references=references,
        infos=infos,
    )


# --- matching and events ----------------------------------------------------------------


def language_pair(alert: Alert) -> tuple[Info | None, Info | None]:
    """(primary, English): Norwegian first when there is one, else the first block."""
    if not alert.infos:
        return None, None
    primary = next((i for i in alert.infos if i.norwegian), alert.infos[0])
    english = next((i for i in alert.infos if i.english and i is not primary), None)
    return primary, english


#: ``<geocode>`` valueNames (any case) that carry a Norwegian county or municipality number.
COUNTY_CODES = frozenset({"county", "fylke", "fylkesnummer"})
MUNICIPALITY_CODES = frozenset({"municipality", "kommune", "kommunenummer"})


def _code_attribute(name: str, value: str) -> tuple[str, str] | None:
    """(unit attribute, normalised number) of a geocode we resolve, else None."""
    kind, code = name.strip().lower(), value.strip()
    if not (code.isascii() and code.isdigit()):
        return None
    if kind in COUNTY_CODES:
        return "county", code.zfill(2)
    if kind in MUNICIPALITY_CODES:
        return "municipality", code.zfill(4)
    return None


def _geocode_hits(area: Area, units: Sequence[Any]) -> set[int]:
    hits: set[int] = set()
    for name, value in area.geocodes:
        resolved = _code_attribute(name, value)
        if resolved is None:
            continue
        attribute, code = resolved
        hits.update(i for i, u in enumerate(units) if getattr(u, attribute, None) == code)
    return hits


def affected_units(alert: Alert, units: Iterable[HasPosition]) -> dict[str, str]:
    """Unit id → the description of the first area (of any info block, the primary first)
    reaching it; in the order of ``units``. An area with a polygon or circle reaches the
    units inside them; one with neither, the units its county/municipality numbers name (a
    geocode beside a shape only labels it: the shape is the more precise)."""
    primary, _ = language_pair(alert)
    ordered = ([primary] if primary else []) + [i for i in alert.infos if i is not primary]
    listed = list(units)
    positions = [(u.lat, u.lon) for u in listed]
    first: dict[int, str] = {}
    for info in ordered:
        for area in info.areas:
            hits = area.inside(positions) if area.has_shape else _geocode_hits(area, listed)
            for i in hits:
                first.setdefault(i, area.desc)
    return {listed[i].id: first[i] for i in sorted(first)}


def has_geometry(alert: Alert) -> bool:
    return any(a.has_shape for i in alert.infos for a in i.areas)


def unresolved_geocodes(alert: Alert) -> list[dict[str, Any]]:
    """The geocodes of shapeless areas that no unit is matched by (``EMMA_ID`` and other
    code lists), each once, as ``{index, field, message}`` warnings."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for i, info in enumerate(alert.infos):
        for j, area in enumerate(info.areas):
            if area.has_shape:
                continue
            for k, (name, value) in enumerate(area.geocodes):
                if _code_attribute(name, value) is not None or (name, value) in seen:
                    continue
                seen.add((name, value))
                out.append(
                    {
                        "index": None,
                        "field": f"info[{i}].area[{j}].geocode[{k}]",
                        "message": f"{name}={value}: ikke støttet / not resolved to units "
                        "(only county and municipality numbers are; send a polygon)",
                    }
                )
    return out


def response_types(alert: Alert) -> list[str]:
    """Every info block's ``responseType``s, each once (MET ends a warning with AllClear)."""
    return list(dict.fromkeys(rt for info in alert.infos for rt in info.response_types))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def warning_events(
    alert: Alert,
    units_in_area: Mapping[str, str],
    *,
    units_referenced: Iterable[str] = (),
    exercise: str | None = None,
) -> list[dict[str, Any]]:
    """One raw ``warning.cap`` event per unit; id = identifier/unit, so re-posting is a no-op.

    ``units_referenced``: units that an earlier alert named in ``references`` reached but this
    Update/Cancel no longer covers; they get an event with ``in_area: false`` so the incident
    that the first alert caused can be closed or annotated.
    """
    primary, english = language_pair(alert)
    base: dict[str, Any] = {
        "identifier": alert.identifier,
        "sender": alert.sender,
        "sent": alert.sent.isoformat(),
        "status": alert.status,
        "msg_type": alert.msg_type,
        "references": list(alert.references),
        "referenced_identifiers": alert.referenced_identifiers,
        "event": (primary.event if primary else None) or alert.note or alert.msg_type,
        "response_types": response_types(alert),
    }
    if primary is not None:
        base.update(
            severity=primary.severity,
            urgency=primary.urgency,
            certainty=primary.certainty,
            headline=primary.headline,
            description=primary.description,
            instruction=primary.instruction,
            web=primary.web,
            language=primary.language,
            awareness_level=primary.parameter("awareness_level"),
            awareness_type=primary.parameter("awareness_type"),
            onset=_iso(primary.onset),
            expires=_iso(primary.expires),
        )
    if english is not None:
        base.update(
            headline_en=english.headline,
            description_en=english.description,
            instruction_en=english.instruction,
        )
    out = []
    targets: list[tuple[str, str | None, bool]] = [
        (u, desc, True) for u, desc in units_in_area.items()
    ]
    targets += [(u, None, False) for u in units_referenced if u not in units_in_area]
    for unit, desc, inside in targets:
        data = {k: v for k, v in base.items() if v is not None}
        data["in_area"] = inside
        if desc:
            data["area_desc"] = desc
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"{alert.identifier}/{unit}",
            "source": f"/cap/{alert.sender}",
            "type": WARNING_TYPE,
            "time": alert.sent.isoformat(),
            "subject": unit,
            "unit": unit,
            "datacontenttype": "application/json",
            "data": data,
        }
        if exercise:
            event["exercise"] = exercise
        out.append(event)
    return out
